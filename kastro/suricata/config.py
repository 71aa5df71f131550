"""A sensor's Suricata variables from the model: HOME_NET and the address groups of the zones.

HOME_NET is the municipality's supernets, its VPN pools and the sensor's own address; the
Kastro groups are the zones by kind (the pack's rules name them). A group the municipality
has no zone for is left out, and the ruleset build turns off the rules that name it
(kastro.suricata.ruleset): no invented address ever stands in for a zone. The classic server
groups (``$HTTP_SERVERS``, ``$DNS_SERVERS``, ...) are the hosts whose services in the model
offer that protocol, the only ones the firewalls let other zones reach it on; a municipality
that declares none keeps Suricata's default, ``$HOME_NET``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from kastro.controller.model_vars import with_model

ZONE_GROUPS = {
    "KASTRO_UNTRUSTED_NETS": ("guest", "iot", "cctv"),
    "KASTRO_SERVER_NETS": ("servers",),
    "KASTRO_MANAGEMENT_NETS": ("management",),
    "KASTRO_STAFF_NETS": ("staff", "voip"),
}
# The names the usual rule sets expect (Suricata's own suricata.yaml), mapped onto the model.
CLASSIC = {
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
# Classic server groups from the services the model's hosts offer (kastro_services ports).
SERVICE_GROUPS = {
    "HTTP_SERVERS": frozenset({"tcp/80", "tcp/443", "tcp/8080", "tcp/8443"}),
    "DNS_SERVERS": frozenset({"udp/53", "tcp/53"}),
    "SMTP_SERVERS": frozenset({"tcp/25", "tcp/465", "tcp/587"}),
    "SQL_SERVERS": frozenset({"tcp/1433", "tcp/1521", "tcp/3306", "tcp/5432"}),
    "TELNET_SERVERS": frozenset({"tcp/23"}),
}
PORT_GROUPS = {
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}


class SuricataModelError(ValueError):
    """The model lacks what a sensor's Suricata needs."""


def variables(hostvars: Mapping[str, Any], host: str = "") -> dict[str, dict[str, str]]:
    """{"address-groups": {...}, "port-groups": {...}} for the sensor's suricata.yaml."""
    model = with_model(hostvars)
    plan = model.get("kastro_plan") or {}
    municipality = model.get("kastro_municipality") or {}
    pools = plan.get("vpn_pools") or {}
    home = _unique(
        [
            *(municipality.get("supernets") or []),
            *_prefixes(pools[name] for name in sorted(pools)),
            *_own_address(hostvars.get("ansible_host"), municipality.get("supernets") or []),
        ]
    )
    if not home:
        raise SuricataModelError(
            f"{host or 'sensor'}: kastro_municipality.supernets is empty: HOME_NET needs the "
            "municipality's networks (run 'kastro apply')"
        )
    zones = plan.get("zones") or {}
    groups = {"HOME_NET": _group(home), **CLASSIC, **_service_groups(model)}
    for name, kinds in ZONE_GROUPS.items():
        members = _prefixes(zones[z] for z in sorted(zones) if zones[z].get("kind") in kinds)
        if members:
            groups[name] = _group(members)
    if pools:
        groups["KASTRO_VPN_NETS"] = _group(_prefixes(pools[name] for name in sorted(pools)))
    return {"address-groups": groups, "port-groups": dict(PORT_GROUPS)}


def _service_groups(model: Mapping[str, Any]) -> dict[str, str]:
    """$HTTP_SERVERS and the like: the hosts whose services offer the protocol, and the zones a
    policy rule opens to it (every host of such a zone can be reached on those ports)."""
    services = model.get("kastro_services") or {}
    plan = model.get("kastro_plan") or {}
    hosts = {
        name: _ports(services, (host or {}).get("services") or [])
        for building in (model.get("kastro_buildings") or {}).values()
        for name, host in ((building or {}).get("hosts") or {}).items()
    }
    groups = {}
    for group, wanted in SERVICE_GROUPS.items():
        members = [
            f"{address}/{ipaddress.ip_address(address).max_prefixlen}"
            for name in sorted(hosts)
            if hosts[name] & wanted
            for address in _prefixes([(plan.get("hosts") or {}).get(name) or {}])
        ] + _opened_zones(model, services, wanted)
        if members:
            groups[group] = _group(_unique(members))
    return groups


def _ports(services: Mapping[str, Any], names: Iterable[Any]) -> set[str]:
    """The ports (``tcp/80``) of the named kastro_services."""
    return {str(p) for n in names for p in (services.get(n) or {}).get("ports") or []}


def _opened_zones(
    model: Mapping[str, Any], services: Mapping[str, Any], wanted: frozenset[str]
) -> list[str]:
    """The prefixes of the zones (by key or kind) that a policy rule opens to ``wanted``."""
    zones = (model.get("kastro_plan") or {}).get("zones") or {}
    opened: set[str] = set()
    for rule in model.get("kastro_policy") or []:
        if not _ports(services, _listed(rule.get("services"))) & wanted:
            continue
        for target in _listed(rule.get("to")):
            opened.update(k for k, z in zones.items() if target in (k, z.get("kind")))
    return _prefixes(zones[k] for k in sorted(opened))


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] if value else []


def _own_address(value: Any, supernets: list[str]) -> list[str]:
    """The address the sensor is reached at, when outside the municipality's networks (a
    management network of its own, the lab's): traffic to the sensor itself is home too."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return []
    inside = any(address in ipaddress.ip_network(str(n), strict=False) for n in supernets)
    return [] if inside else [f"{address}/{address.max_prefixlen}"]


def _prefixes(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    listed = list(entries)
    return [str(e[f]) for f in ("ipv4", "ipv6") for e in listed if e.get(f)]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in items))


def _group(prefixes: list[str]) -> str:
    return "[" + ",".join(prefixes) + "]"
