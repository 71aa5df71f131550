"""The sides of a policy rule (a zone kind, BUILDING.ZONE, a host or device, teleworkers.GROUP,
internet) as
the planned prefixes they stand for. The firewall's chains and the teleworkers' routes both
read the policy this way, so both import it from here, not from each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kastro.inventory.validate import INTERNET, TELEWORKER_PREFIX


@dataclass(frozen=True)
class Endpoint:
    """One side of a zone pair: a zone, one host or device, a teleworker pool, or the
    internet."""

    key: str  # cityhall.staff, scada-hmi, teleworkers.finance, internet
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    internet: bool = False
    zone: str = ""  # a host's or device's zone (BUILDING.ZONE); a zone's is its own key

    @property
    def within(self) -> str:
        """The zone this side sits in ('' for teleworkers and the internet)."""
        return self.zone or (self.key if "." in self.key and not self.internet else "")

    @property
    def label(self) -> str:
        """The side's part of chain and counter names, injective by construction: model names
        are [a-z0-9-] only, so a zone key always has one '.', a teleworker label one '_'
        ('tw_' + group), and a host's or device's name and 'internet' neither (no host may
        be called 'internet': it is reserved); no two sides can share a label, and
        'from_A_to_B' splits one way only (see test_chain_names_are_injective)."""
        if self.internet:
            return INTERNET
        if self.key.startswith(TELEWORKER_PREFIX):
            return "tw_" + self.key[len(TELEWORKER_PREFIX) :]
        return self.key


def as_list(value: Any) -> list[str]:
    """A policy field that may name one thing or a list of them, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def prefixes_of(entry: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A planned zone's or pool's (IPv4, IPv6) prefixes; a family the plan lacks is empty."""
    return (
        (str(entry["ipv4"]),) if entry.get("ipv4") else (),
        (str(entry["ipv6"]),) if entry.get("ipv6") else (),
    )


INTERNET_ENDPOINT = Endpoint(INTERNET, (), (), internet=True)


def resolve_side(plan: Mapping[str, Any], name: str) -> list[Endpoint]:
    """A policy side (zone kind, BUILDING.ZONE, teleworkers.GROUP, internet) as the planned
    prefixes it stands for; the firewall and the telework routes both read it this way."""
    zones: Mapping[str, Mapping[str, Any]] = plan.get("zones") or {}
    if name == INTERNET:
        return [INTERNET_ENDPOINT]
    if name.startswith(TELEWORKER_PREFIX):
        pool = (plan.get("vpn_pools") or {}).get(name[len(TELEWORKER_PREFIX) :])
        return [Endpoint(name, *prefixes_of(pool))] if pool else []
    for section in ("hosts", "devices"):
        seat = (plan.get(section) or {}).get(name)
        if seat and seat.get("zone") and seat.get("ipv4"):
            return [_one_address(name, seat)]
    keys = [name] if name in zones else [k for k in sorted(zones) if zones[k]["kind"] == name]
    return [Endpoint(k, *prefixes_of(zones[k])) for k in keys]


def _one_address(name: str, seat: Mapping[str, Any]) -> Endpoint:
    v6 = (f"{seat['ipv6']}/128",) if seat.get("ipv6") else ()
    return Endpoint(name, (f"{seat['ipv4']}/32",), v6, zone=str(seat["zone"]))
