"""What each teleworker group's devices route into the VPN, and the OpenVPN addresses.

The firewall enforces the policy (by pool prefix, on the city-hall gateway); these routes
only keep a split-tunnel device from sending everything else through the municipality.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import netaddr

from kastro.inventory.plan import wireguard_limit
from kastro.inventory.sides import as_list, resolve_side
from kastro.inventory.validate import INTERNET, TELEWORKER_PREFIX

FULL_TUNNEL = ("0.0.0.0/0", "::/0")


def allowed_ips(variables: Mapping[str, Any], group: str, full_tunnel: bool = False) -> list[str]:
    """The prefixes a device of `group` routes through the tunnel: the zones the policy lets
    the group reach (and the group's own pool, for the server), or everything for a full
    tunnel or a group allowed to the internet."""
    plan = variables.get("kastro_plan") or {}
    pool = (plan.get("vpn_pools") or {}).get(group) or {}
    source = f"{TELEWORKER_PREFIX}{group}"
    prefixes: list[str | None] = []
    for rule in variables.get("kastro_policy") or []:
        if source not in as_list(rule.get("from")):
            continue
        for destination in as_list(rule.get("to")):
            if destination == INTERNET:
                full_tunnel = True
            for end in resolve_side(plan, destination):
                prefixes += [*end.ipv4, *end.ipv6]
    if full_tunnel:
        return list(FULL_TUNNEL)
    prefixes += [pool.get("ipv4"), pool.get("ipv6")]
    merged = netaddr.cidr_merge([netaddr.IPNetwork(p) for p in prefixes if p])
    return [str(n) for n in sorted(merged, key=lambda n: (n.version, n))]


def openvpn_subnet(pool_ipv4: str) -> dict[str, str]:
    """The upper half of a group's IPv4 pool, which OpenVPN uses, and the server's address in it."""
    pool = netaddr.IPNetwork(pool_ipv4)
    upper = netaddr.IPNetwork(
        f"{netaddr.IPAddress(int(pool.first) + pool.size // 2)}/{pool.prefixlen + 1}"
    )
    return {
        "subnet": str(upper.cidr),
        "netmask": str(upper.netmask),
        "prefixlen": str(upper.prefixlen),
        "server": str(netaddr.IPAddress(int(upper.first) + 1)),
    }


def openvpn_subnets(variables: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """group -> its OpenVPN half-pool (see openvpn_subnet)."""
    pools = (variables.get("kastro_plan") or {}).get("vpn_pools") or {}
    return {group: openvpn_subnet(str(pool["ipv4"])) for group, pool in sorted(pools.items())}


def openvpn_address(variables: Mapping[str, Any], teleworker: str) -> dict[str, str]:
    """A teleworker's OpenVPN address: the WireGuard address moved into the upper half of
    the group's pool, so the two tunnels never claim the same address and the firewall
    still recognises the group by its pool."""
    plan = variables.get("kastro_plan") or {}
    entry = (plan.get("teleworkers") or {}).get(teleworker)
    if not entry:
        raise ValueError(f"teleworker '{teleworker}' is not in kastro_plan.teleworkers")
    pool = netaddr.IPNetwork(plan["vpn_pools"][entry["group"]]["ipv4"])
    address = netaddr.IPAddress(entry["ipv4"])
    half = pool.size // 2
    if int(address) - int(pool.first) >= wireguard_limit(pool):
        raise ValueError(
            f"teleworker '{teleworker}' ({address}) is in the upper half of the "
            f"{entry['group']} pool {pool}, which OpenVPN uses: raise the group's pool_size"
        )
    return {"address": str(netaddr.IPAddress(int(address) + half)), **openvpn_subnet(str(pool))}


def people(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Who gets a tunnel: teleworkers whose state is enabled (the default) and who are in the
    plan, in the order of their stable ids."""
    planned = (variables.get("kastro_plan") or {}).get("teleworkers") or {}
    chosen = [
        dict(person)
        for person in variables.get("kastro_teleworkers") or []
        if person.get("state", "enabled") == "enabled" and person.get("id") in planned
    ]
    return sorted(chosen, key=lambda p: str(p["id"]))


def peers(variables: Mapping[str, Any], keys_dir: str) -> list[dict[str, Any]]:
    """Each person's public facts for the server and the client files: id, group, public key
    (their own, or the one the role generated in `keys_dir/ID.pub` on the controller),
    whether they brought it, and their planned addresses. No secret is read."""
    planned = (variables.get("kastro_plan") or {}).get("teleworkers") or {}
    out = []
    for person in people(variables):
        own = "public_key" in person
        if own:
            key = str(person["public_key"])
        else:  # as lookup('file') reads it: without the trailing newline
            key = (Path(keys_dir) / f"{person['id']}.pub").read_text(encoding="utf-8").rstrip()
        entry = planned[person["id"]]
        out.append(
            {
                "id": person["id"],
                "group": person["group"],
                "public_key": key,
                "own_key": own,
                "ipv4": entry["ipv4"],
                "ipv6": entry.get("ipv6", ""),
            }
        )
    return out


def certificates_to_revoke(issued: list[str], people_ids: list[str], rekey: list[str]) -> list[str]:
    """The OpenVPN client certificates to revoke, by name, from the paths of those issued so
    far: everyone who no longer has access, and everyone who gets new keys on this run. The
    server's own certificate is never among them."""
    keep = set(people_ids) - set(rekey)
    names = sorted({Path(p).stem for p in issued if p.endswith(".crt")})
    return [n for n in names if n != "server" and n not in keep]
