"""Kastro's own flows, derived from the model: every managed host's path to its security updates
and to the time, without a policy rule from the admin.

The gateways let nothing out that the model does not name, and `base` configures unattended
upgrades and chrony on every host: without these flows a server would silently never update.

- Updates (``kastro_municipality.updates``): through the apt cache on one server (``cache``:
  apt-cacher-ng on port 3142, the only host that reaches the mirrors: HTTP, HTTPS and DNS to
  internet addresses), or every managed host straight to the mirrors (``direct``).
- Time: every gateway serves NTP to the municipality's addresses. A server or sensor asks its
  zone's gateway; a gateway whose building has an uplink asks the pools on the internet; a
  gateway without one asks the gateways that have one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import netaddr

from kastro.inventory.plan import host_addresses, management_address, monitoring_addresses

UPDATE_CACHE_PORT = 3142
MIRROR_PORTS = (80, 443)
DNS_PORT = 53  # the mirrors' names, until the municipality's own resolver (issue #23) answers
NTP_PORT = 123


def _municipality(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    return variables.get("kastro_municipality") or {}


def _planned(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    return (variables.get("kastro_plan") or {}).get("hosts") or {}


def update_cache(variables: Mapping[str, Any]) -> str:
    """The server that runs the apt cache; '' when the hosts fetch directly."""
    updates = _municipality(variables).get("updates") or {}
    return str(updates.get("cache") or "")


def updates_direct(variables: Mapping[str, Any]) -> bool:
    updates = _municipality(variables).get("updates") or {}
    return bool(updates.get("direct"))


def managed_addresses(variables: Mapping[str, Any]) -> list[str]:
    """Every address a managed host may connect from, as the fewest prefixes: each host's
    planned addresses, and the rest of the supernets outside every zone and teleworker pool
    (where the plan puts link ends and router ids, from the top). Nobody else can send from
    that rest (each zone's port carries only its own prefixes), and a new link then changes
    no ruleset but its ends' (molecule/links)."""
    plan = variables.get("kastro_plan") or {}
    found = netaddr.IPSet(a for h in _planned(variables) for a in host_addresses(plan, h))
    parts = [*(plan.get("zones") or {}).values(), *(plan.get("vpn_pools") or {}).values()]
    taken = netaddr.IPSet(str(p[f]) for p in parts for f in ("ipv4", "ipv6") if p.get(f))
    supernets = netaddr.IPSet(str(n) for n in _municipality(variables).get("supernets") or [])
    return [str(n) for n in (found | (supernets - taken)).iter_cidrs()]


def cache_addresses(variables: Mapping[str, Any]) -> list[str]:
    cache = update_cache(variables)
    return monitoring_addresses(dict(variables.get("kastro_plan") or {}), [cache] if cache else [])


def apt_proxy(variables: Mapping[str, Any], host: str) -> str:
    """The apt proxy URL for `host`: the cache's planned address, '' for the cache itself and
    when the hosts fetch directly."""
    cache = update_cache(variables)
    if not cache or cache == host:
        return ""
    address = management_address(variables.get("kastro_plan") or {}, cache)
    return f"http://{address}:{UPDATE_CACHE_PORT}"


def host_updates(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What the updates role does on `host`: run the cache (its listen addresses), or send
    apt through the cache (the proxy URL), or neither (direct)."""
    cache = update_cache(variables) == host
    return {
        "cache": cache,
        "listen": cache_addresses(variables) if cache else [],
        "port": UPDATE_CACHE_PORT,
        "proxy": apt_proxy(variables, host),
    }


def uplinked_gateways(variables: Mapping[str, Any]) -> list[str]:
    """The gateways whose building has an uplink: they ask the internet's NTP pools."""
    buildings = {str(u.get("building")) for u in _municipality(variables).get("uplinks") or []}
    return sorted(
        h
        for h, e in _planned(variables).items()
        if e.get("role") == "gateway" and e.get("building") in buildings
    )


def time_sources(variables: Mapping[str, Any]) -> list[str]:
    """The addresses the gateways without an uplink ask for the time: each uplinked gateway's
    management address (none when every gateway has an uplink)."""
    plan = variables.get("kastro_plan") or {}
    gateways = [h for h, e in _planned(variables).items() if e.get("role") == "gateway"]
    uplinked = uplinked_gateways(variables)
    if set(gateways) <= set(uplinked):
        return []
    return [management_address(plan, g) for g in uplinked]


def host_time(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """chrony's sources for `host`: servers (addresses) and whether it asks the pools, and the
    networks it serves time to (a gateway: the municipality's supernets)."""
    entry = _planned(variables).get(host)
    if entry is None:  # a host without the model (a role's own test): the pools, as before
        return {"servers": [], "pools": True, "serve": []}
    supernets = [str(n) for n in _municipality(variables).get("supernets") or []]
    if entry.get("role") != "gateway":
        zone = ((variables.get("kastro_plan") or {}).get("zones") or {}).get(
            str(entry.get("zone") or "")
        ) or {}
        servers = [str(zone[f]) for f in ("gateway_ipv4", "gateway_ipv6") if zone.get(f)]
        return {"servers": servers[:1], "pools": False, "serve": []}
    if host in uplinked_gateways(variables):
        return {"servers": [], "pools": True, "serve": supernets}
    return {"servers": time_sources(variables), "pools": False, "serve": supernets}
