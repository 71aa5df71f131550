"""Published services as the roles see them: which gateway forwards which public address and
ports to which host (kastro_published, on the uplinks of kastro_municipality).

The firewall (DNAT, forward and host rules, hairpin NAT) and the links role (the public
addresses on the uplink interface) both read them from here, from the same variables the
roles see; `kastro validate` has checked them already (a host with a planned address, public
addresses on an uplink's network, services with ports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import netaddr

from kastro.inventory.model import OWN, parse_port


@dataclass(frozen=True)
class Forward:
    """One published service in one address family."""

    name: str  # the kastro_published entry
    family: int  # 4 or 6
    public: str  # the public address; "" for IPv6 'own' (forwarded without NAT)
    target: str  # the host's planned address
    zone: str  # the host's zone (BUILDING.ZONE)
    building: str  # the host's building
    uplink: str  # the uplink whose network holds the public address ("" for 'own')
    uplink_building: str
    tcp: tuple[str, ...]  # port spans (80, 10000-20000)
    udp: tuple[str, ...]
    sources: tuple[str, ...]  # internet networks allowed; empty: all
    rate: str  # "" or N/second, N/minute

    @property
    def key(self) -> str:
        """A name for the entry's counters and meters (nft names: [A-Za-z0-9_])."""
        return f"{self.name.replace('-', '_')}_v{self.family}"

    @property
    def nft(self) -> str:
        """nftables' name of the address family: ip or ip6."""
        return "ip" if self.family == 4 else "ip6"

    @property
    def first_tcp_ports(self) -> list[int]:
        """The first port of each TCP span: where a connection can be tried or listened on."""
        return sorted({int(span.split("-")[0]) for span in self.tcp})


def _uplink_for(uplinks: list[Mapping[str, Any]], address: netaddr.IPAddress) -> Mapping[str, Any]:
    for up in uplinks:
        text = up.get(f"ipv{address.version}")
        if text and address in netaddr.IPNetwork(str(text)):
            return up
    return {}


def _seat(plan: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for section in ("hosts", "devices"):
        seat = (plan.get(section) or {}).get(name)
        if seat:
            return dict(seat)
    return {}


def _ports(services: Mapping[str, Any], names: list[str]) -> tuple[list[str], list[str]]:
    tcp: list[str] = []
    udp: list[str] = []
    for name in names:
        for text in (services.get(name) or {}).get("ports") or ():
            port, _ = parse_port(text)
            if port is not None and port.protocol in ("tcp", "udp"):
                (tcp if port.protocol == "tcp" else udp).append(port.span)
    return tcp, udp


def forwards(variables: Mapping[str, Any]) -> list[Forward]:
    """Every published service, per address family, in the order of kastro_published."""
    plan = variables.get("kastro_plan") or {}
    services = variables.get("kastro_services") or {}
    uplinks = list((variables.get("kastro_municipality") or {}).get("uplinks") or [])
    out: list[Forward] = []
    for name, entry in (variables.get("kastro_published") or {}).items():
        seat = _seat(plan, str(entry["host"]))
        for family in (4, 6):
            if entry.get(f"ipv{family}") and seat.get(f"ipv{family}"):
                out.append(_forward(str(name), entry, seat, family, services, uplinks))
    return out


def _forward(
    name: str,
    entry: Mapping[str, Any],
    seat: Mapping[str, Any],
    family: int,
    services: Mapping[str, Any],
    uplinks: list[Mapping[str, Any]],
) -> Forward:
    public = str(entry[f"ipv{family}"])
    own = family == 6 and public == OWN
    up = {} if own else _uplink_for(uplinks, netaddr.IPAddress(public))
    tcp, udp = _ports(services, [str(s) for s in entry.get("services") or ()])
    sources = [netaddr.IPNetwork(str(n)) for n in entry.get("from") or ()]
    return Forward(
        name=name,
        family=family,
        public="" if own else str(netaddr.IPAddress(public)),
        target=str(seat[f"ipv{family}"]),
        zone=str(seat.get("zone") or ""),
        building=str(seat.get("building") or ""),
        uplink=str(up.get("name") or ""),
        uplink_building=str(up.get("building") or ""),
        tcp=tuple(tcp),
        udp=tuple(udp),
        sources=tuple(str(n.cidr) for n in sources if n.version == family),
        rate=str(entry.get("rate") or ""),
    )


def uplink_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The gateway's first uplink interface and the addresses it carries there: its own on the
    ISP's network and the public addresses of the services it publishes (kastro_published)."""
    uplinks = gateway_uplinks(variables, host)
    if not uplinks:
        return {"interface": "", "addresses": []}
    return {"interface": uplinks[0]["interface"], "addresses": uplinks[0]["addresses"]}


# Policy routing on a gateway with uplinks (kastro-uplinks): uplink N (0-based, model order)
# has routing table UPLINK_TABLE + 1 + N and connection mark UPLINK_MARK + 1 + N; table
# UPLINK_TABLE holds the default route of the uplink in use.
UPLINK_TABLE = 100
UPLINK_MARK = 0x4B00


def gateway_uplinks(variables: Mapping[str, Any], host: str) -> list[dict[str, Any]]:
    """The gateway's uplinks in the model's order (the first is preferred): port, addresses
    (its own, then each public address published on it), the ISP's router, the probes, and
    its routing table and connection mark. Empty for any other host."""
    planned = ((variables.get("kastro_plan") or {}).get("hosts") or {}).get(host) or {}
    wan = (variables.get("kastro_interfaces") or {}).get("wan")
    if planned.get("role") != "gateway" or not wan:
        return []
    building = str(planned.get("building"))
    mine = [
        up
        for up in (variables.get("kastro_municipality") or {}).get("uplinks") or []
        if up.get("building") == building
    ]
    published = forwards(variables)
    return [
        _uplink_entry(up, rank, str(wan if rank == 0 else up.get("interface") or ""), published)
        for rank, up in enumerate(mine)
    ]


def _uplink_entry(
    up: Mapping[str, Any], rank: int, interface: str, published: list[Forward]
) -> dict[str, Any]:
    own = [str(up[f"ipv{f}"]) for f in (4, 6) if up.get(f"ipv{f}")]
    taken = {str(netaddr.IPNetwork(a).ip) for a in own}
    extra = []
    for forward in published:
        if forward.uplink == up.get("name") and forward.public not in taken:
            taken.add(forward.public)
            extra.append(f"{forward.public}/{32 if forward.family == 4 else 128}")
    entry: dict[str, Any] = {
        "name": str(up.get("name")),
        "interface": interface,
        "addresses": own + extra,
        "table": UPLINK_TABLE + 1 + rank,
        "mark": UPLINK_MARK + 1 + rank,
        "probe": [str(a) for a in up.get("probe") or []],
    }
    for f in (4, 6):
        entry[f"gateway_ipv{f}"] = str(up.get(f"gateway_ipv{f}") or "")
        entry[f"network_ipv{f}"] = _network(up.get(f"ipv{f}"))
    return entry


def _network(text: Any) -> str:
    return str(netaddr.IPNetwork(str(text)).cidr) if text else ""


def published_tcp_ports(variables: Mapping[str, Any], host: str) -> list[int]:
    """The TCP ports published for `host` (the first of each range): what the lab's stand-in
    services listen on."""
    planned = ((variables.get("kastro_plan") or {}).get("hosts") or {}).get(host) or {}
    mine = {str(planned.get("ipv4") or ""), str(planned.get("ipv6") or "")} - {""}
    return sorted({p for f in forwards(variables) if f.target in mine for p in f.first_tcp_ports})
