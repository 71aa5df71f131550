"""From alerts to an incident's facts: which alerts, which of the municipality's assets they
touch, and the indicators of compromise they carry.

Alerts are read as Alertmanager's API gives them (`GET /api/v2/alerts`: a JSON list, each with
its `fingerprint`, labels, annotations and start time): saved by the SOC or the demo. Every
value taken from an alert is checked (addresses parsed, names matched against the plan, texts
bounded): an alert is input from the network.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINGERPRINT = re.compile(r"[0-9a-f]{16}")
SID = re.compile(r"[0-9]{1,10}")
SHA256 = re.compile(r"[0-9a-f]{64}")
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}")
TEXT_MAX = 300
# Alerts whose `host` label is the host that *saw* the attack, not its target.
REPORTED_BY_SENSOR = frozenset({
    "KastroEveAlert", "KastroAttackDetected", "KastroCaptureDrops",
    "KastroIdsAlert", "KastroSuricataDrops",
})  # fmt: skip


class AlertError(ValueError):
    """An alert that cannot be used; the message names it and the fix."""


def load(path: Path) -> list[dict[str, Any]]:
    """The alerts of a saved `/api/v2/alerts` answer."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AlertError(
            f"--alerts {path}: {error} (save them with: curl --cacert ca.crt -u kastro "
            "https://MONITOR:9093/api/v2/alerts > alerts.json)"
        ) from error
    if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
        raise AlertError(f"--alerts {path}: not a list of alerts (Alertmanager's /api/v2/alerts)")
    return data


def find(alerts: Iterable[Mapping[str, Any]], wanted: str) -> dict[str, Any]:
    """The alert with this fingerprint, reduced to what an incident keeps."""
    if not FINGERPRINT.fullmatch(wanted):
        raise AlertError(
            f"--from-alert '{wanted}': an alert's id is its 16-hex-digit fingerprint "
            "(Alertmanager shows it; e.g. 3f2a9c0d4b1e7a65)"
        )
    known = []
    for alert in alerts:
        fingerprint = str(alert.get("fingerprint", ""))
        if fingerprint == wanted:
            return reduced(alert)
        known.append(fingerprint)
    raise AlertError(
        f"--from-alert {wanted}: καμία τέτοια ειδοποίηση / no such alert in the file "
        f"(it holds {len(known)}: {', '.join(sorted(known)[:8]) or 'none'})"
    )


def _text(value: Any, limit: int = TEXT_MAX) -> str:
    return str(value)[:limit] if isinstance(value, str | int | float) else ""


def reduced(alert: Mapping[str, Any]) -> dict[str, Any]:
    labels = alert.get("labels") if isinstance(alert.get("labels"), dict) else {}
    notes = alert.get("annotations") if isinstance(alert.get("annotations"), dict) else {}
    return {
        "fingerprint": _text(alert.get("fingerprint"), 16),
        "startsAt": _text(alert.get("startsAt"), 40),
        "labels": {_text(k, 60): _text(v) for k, v in sorted((labels or {}).items())},
        "summary_el": _text((notes or {}).get("summary_el")),
        "summary_en": _text((notes or {}).get("summary_en")),
        "eve": _text((notes or {}).get("eve"), 4096),
    }


@dataclass
class Facts:
    """What the linked alerts say, joined with the plan."""

    hosts: set[str] = field(default_factory=set)
    zones: set[str] = field(default_factory=set)
    buildings: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)  # outside the municipality: IOCs
    sids: set[str] = field(default_factory=set)
    signatures: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)

    def iocs(self) -> dict[str, list[str]]:
        return {
            "addresses": sorted(self.addresses, key=_address_order),
            "signature_ids": sorted(self.sids, key=int),
            "domains": sorted(self.domains),
            "sha256": sorted(self.hashes),
        }


def _address_order(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return address.version, int(address)


class Plan:
    """The plan's addresses: which host or zone an address belongs to."""

    def __init__(
        self,
        plan: Mapping[str, Any],
        supernets: Iterable[str],
        reached_at: Mapping[str, str] | None = None,
    ) -> None:
        self.hosts: dict[str, Mapping[str, Any]] = dict(plan.get("hosts") or {})
        self.zones: dict[str, Mapping[str, Any]] = dict(plan.get("zones") or {})
        self.supernets = [ipaddress.ip_network(n) for n in supernets]
        self.by_address: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
        for name, host in self.hosts.items():
            for key in ("ipv4", "ipv6"):
                if host.get(key):
                    self.by_address[ipaddress.ip_address(host[key])] = name
            for port in (host.get("interfaces") or {}).values():
                for key in ("ipv4", "ipv6"):
                    if port.get(key):
                        self.by_address[ipaddress.ip_address(port[key])] = name
        for address, name in (reached_at or {}).items():  # where Ansible reaches a host
            if name in self.hosts:
                self.by_address.setdefault(ipaddress.ip_address(address), name)

    def internal(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in net for net in self.supernets)

    def zone_of(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        for name, zone in sorted(self.zones.items()):
            for key in ("ipv4", "ipv6"):
                if zone.get(key) and address in ipaddress.ip_network(zone[key]):
                    return name
        return None


def facts(linked: Iterable[Mapping[str, Any]], plan: Plan) -> Facts:
    found = Facts()
    for alert in linked:
        labels = alert.get("labels") or {}
        _host_label(found, labels, plan)
        for key in ("src_ip", "dest_ip"):
            _address(found, labels.get(key, ""), plan)
        if SID.fullmatch(labels.get("signature_id", "")):
            found.sids.add(labels["signature_id"])
        if labels.get("signature"):
            found.signatures.add(labels["signature"][:TEXT_MAX])
        _eve(found, alert.get("eve", ""), plan)
    return found


def _host_label(found: Facts, labels: Mapping[str, str], plan: Plan) -> None:
    host = labels.get("host", "")
    if host in plan.hosts and labels.get("alertname") not in REPORTED_BY_SENSOR:
        _add_host(found, host, plan)
    building = labels.get("building", "")
    if building and any(z.get("building") == building for z in plan.zones.values()):
        found.buildings.add(building)


def _add_host(found: Facts, host: str, plan: Plan) -> None:
    found.hosts.add(host)
    entry = plan.hosts[host]
    found.buildings.add(str(entry.get("building", "")))
    if entry.get("zone"):
        found.zones.add(str(entry["zone"]))


def _address(found: Facts, text: Any, plan: Plan) -> None:
    """A planned host's (or where Ansible reaches it) -> affected; in a zone -> the zone;
    outside the municipality -> an IOC (not loopback, link-local or multicast)."""
    try:
        address = ipaddress.ip_address(str(text))
    except ValueError:
        return
    if address in plan.by_address:
        _add_host(found, plan.by_address[address], plan)
    elif plan.internal(address):
        zone = plan.zone_of(address)
        if zone:
            found.zones.add(zone)
            found.buildings.add(str(plan.zones[zone].get("building", "")))
    elif not (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
    ):
        found.addresses.add(str(address))


def _eve(found: Facts, text: str, plan: Plan) -> None:
    """Domains and file hashes from the EVE record an alert carries (may be cut short)."""
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        return
    if not isinstance(record, dict):
        return
    for section, key in (("dns", "rrname"), ("http", "hostname"), ("tls", "sni")):
        value = record.get(section, {}).get(key) if isinstance(record.get(section), dict) else None
        if isinstance(value, str) and DOMAIN.fullmatch(value.lower().rstrip(".")):
            found.domains.add(value.lower().rstrip("."))
    for section in ("fileinfo", "kastro"):
        part = record.get(section)
        digest = part.get("sha256") if isinstance(part, dict) else None
        if isinstance(digest, str) and SHA256.fullmatch(digest.lower()):
            found.hashes.add(digest.lower())
