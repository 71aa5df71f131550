"""`kastro show host NAME`: what one host of the model will get, before any playbook runs.

Everything comes from the model and the plan (the same data the roles compile from) and from
the playbook's own plays (which groups each role is applied to): where the host sits, its
addresses, its Ansible groups, the roles site.yml gives it, and the policy rules that let
traffic in or out of its zones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kastro.i18n import _, t, tr
from kastro.inventory.model import Model
from kastro.inventory.project import describe_rule, hosts_inventory

SITE = Path(__file__).resolve().parents[2] / "playbooks" / "site.yml"


class UnknownHostError(ValueError):
    """The name is not a host of the model; the message lists the ones there are."""


def host_groups(model: Model, name: str) -> list[str]:
    """The Ansible groups `name` is in, as kastro_hosts.yml makes them (nested ones too)."""
    children = hosts_inventory(model)["all"]["children"]
    direct = {group for group, body in children.items() if name in (body.get("hosts") or {})}
    found = set(direct)
    changed = True
    while changed:  # a group whose children hold the host holds it too (kastro_managed)
        changed = False
        for group, body in children.items():
            if group not in found and found & set(body.get("children") or {}):
                found.add(group)
                changed = True
    return sorted(found)


def _matches(pattern: str, groups: set[str], name: str) -> bool:
    """An Ansible host pattern of the kind site.yml uses: a:b:!c (no regexes, no &)."""
    wanted, refused = False, False
    for part in pattern.split(":"):
        target = part.lstrip("!")
        hit = target in ("all", name) or target in groups
        if part.startswith("!"):
            refused |= hit
        else:
            wanted |= hit
    return wanted and not refused


def roles_for(groups: Sequence[str], name: str, site: Path = SITE) -> list[tuple[str, str]]:
    """(play, role) for each role of site.yml that applies to a host in `groups`."""
    plays = yaml.safe_load(site.read_text(encoding="utf-8"))
    found = []
    for play in plays:
        pattern = str(play.get("hosts") or "")
        if not pattern or not _matches(pattern, set(groups), name):
            continue
        for role in play.get("roles") or []:
            named = role["role"] if isinstance(role, dict) else role
            found.append((play.get("name", pattern), named))
    return found


def _host(model: Model, name: str) -> Any:
    for host in model.hosts:
        if host.name == name:
            return host
    known = ", ".join(sorted(h.name for h in model.hosts)) or "none"
    raise UnknownHostError(
        tr(t("'{name}' is not a host of the model; the hosts are: {known}", name=name, known=known))
    )


def _device(model: Model, name: str) -> Any:
    for building in model.buildings.values():
        if name in building.devices:
            return building.devices[name]
    return None


def _rules(model: Model, selectors: set[str]) -> list[str]:
    rules = [rule for rule in model.policy
             if selectors & (set(rule.sources) | set(rule.destinations))]  # fmt: skip
    lines = [_("  policy rules that reach or leave its zones:")]
    return lines + (
        [
            tr(t("    rule {number}: {rule}", number=r.index + 1, rule=describe_rule(model, r)))
            for r in rules
        ]
        or ["    none"]
    )


def show_device(model: Model, plan: Mapping[str, Any], device: Any) -> list[str]:
    """A device Kastro documents but never configures: its place, planned address, rules."""
    zone = f"{device.building}.{device.zone}"
    lines = [
        tr(
            t(
                "{name}: {kind} (documented, not managed) in building {building}, zone {zone}",
                name=device.name,
                kind=device.kind,
                building=device.building,
                zone=zone,
            )
        )
    ]
    planned = (plan.get("devices") or {}).get(device.name)
    if planned:
        lines.append(
            tr(
                t(
                    "  fixed address (set it on the device or its DHCP reservation): "
                    "{ipv4}, {ipv6}",
                    ipv4=planned["ipv4"],
                    ipv6=planned.get("ipv6", "-"),
                )
            )
        )
    else:
        lines.append(_("  address: none planned (fixed_address: true gives it one)"))
    kind = next(z.kind for z in model.zones if z.key == zone)
    return lines + _rules(model, {zone, kind, device.name})


def _zone_names(model: Model, host: Any) -> set[str]:
    """The zone selectors that take in the host: BUILDING.ZONE and the zone's kind (a gateway:
    every zone of its building)."""
    zones = [z for z in model.zones if z.building == host.building]
    if host.role != "gateway":
        zones = [z for z in zones if z.name == host.zone]
    return {z.key for z in zones} | {z.kind for z in zones} | {host.name}


def show_host(model: Model, plan: Mapping[str, Any], name: str) -> list[str]:
    """The lines `kastro show host NAME` prints (a device's too)."""
    device = _device(model, name)
    if device is not None:
        return show_device(model, plan, device)
    host = _host(model, name)
    planned = plan.get("hosts", {}).get(name, {})
    lines = [
        tr(
            t(
                "{name}: {role} in building {building}",
                name=name,
                role=host.role,
                building=host.building,
            )
        )
        + (f", zone {host.building}.{host.zone}" if host.zone else "")
    ]
    if planned.get("ipv4"):
        lines.append(
            tr(
                t(
                    "  addresses: {ipv4}, {ipv6}",
                    ipv4=planned["ipv4"],
                    ipv6=planned.get("ipv6", "-"),
                )
            )
        )
    for zone, addresses in sorted((planned.get("interfaces") or {}).items()):
        lines.append(
            tr(
                t(
                    "  in zone {zone}: {ipv4}, {ipv6}",
                    zone=zone,
                    ipv4=addresses.get("ipv4"),
                    ipv6=addresses.get("ipv6"),
                )
            )
        )
    groups = host_groups(model, name)
    lines.append(f"  groups: {', '.join(groups)}")
    lines.append(_("  roles (playbooks/site.yml, in order):"))
    lines += [f"    {role}  ({play})" for play, role in roles_for(groups, name)] or ["    none"]
    return lines + _rules(model, _zone_names(model, host))
