"""What each gateway's `kastro-discover` compares the network with (NIS2: the asset register
stays true): its building's zones with their IPv4 networks and interfaces, the register's
hosts and devices in them, and its own addresses. Compiled here from the model and the plan;
the program on the gateway checks every value again (kastro.host.discover).

A registered host is recognised by its planned address (and its MAC when the register has
one); a documented device by its MAC (its address is the DHCP server's choice), so a device
without a `mac` cannot be told from a stranger and is listed in `unrecognisable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_MISSING_AFTER_HOURS = 168  # a week: holidays, a PC switched off for a long weekend


def discovery(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The gateway's configuration; empty for any other host."""
    plan = variables.get("kastro_plan") or {}
    entry = (plan.get("hosts") or {}).get(host) or {}
    if entry.get("role") != "gateway":
        return {}
    building = str(entry.get("building"))
    zones = _zones(plan, building, (variables.get("kastro_interfaces") or {}).get("zones") or {})
    keys = {z["zone"] for z in zones}
    raw = (variables.get("kastro_buildings") or {}).get(building) or {}
    devices, unrecognisable = _devices(raw, building, keys)
    own = sorted(str(p["ipv4"]) for p in (entry.get("interfaces") or {}).values() if p.get("ipv4"))
    return {
        "zones": zones,
        "devices": _hosts(plan, raw, keys, host) + devices,
        "own": own,
        "unrecognisable": unrecognisable,
        "missing_after_hours": int(
            variables.get("discovery_missing_after_hours", DEFAULT_MISSING_AFTER_HOURS)
        ),
    }


def _zones(
    plan: Mapping[str, Any], building: str, ports: Mapping[str, Any]
) -> list[dict[str, str]]:
    """The building's zones that have a port on the gateway, with their IPv4 networks."""
    found = []
    for key, zone in sorted((plan.get("zones") or {}).items()):
        name = key.split(".", 1)[1]
        if zone.get("building") == building and zone.get("ipv4") and name in ports:
            found.append({"zone": key, "interface": str(ports[name]), "network": str(zone["ipv4"])})
    return found


def _hosts(
    plan: Mapping[str, Any], raw: Mapping[str, Any], keys: set[str], gateway: str
) -> list[dict[str, str]]:
    """The managed hosts in those zones: their planned address, their MAC when registered."""
    found = []
    for name, planned in sorted((plan.get("hosts") or {}).items()):
        if planned.get("zone") in keys and planned.get("ipv4") and name != gateway:
            mac = str(((raw.get("hosts") or {}).get(name) or {}).get("mac") or "").lower()
            found.append({"name": name, "address": str(planned["ipv4"]), "mac": mac})
    return found


def _devices(
    raw: Mapping[str, Any], building: str, keys: set[str]
) -> tuple[list[dict[str, str]], list[str]]:
    """The documented devices in those zones: by MAC; those without one, by name apart."""
    found, unrecognisable = [], []
    for name, device in sorted((raw.get("devices") or {}).items()):
        if f"{building}.{device.get('zone')}" not in keys:
            continue
        if device.get("mac"):
            found.append({"name": str(name), "address": "", "mac": str(device["mac"]).lower()})
        else:
            unrecognisable.append(str(name))
    return found, unrecognisable
