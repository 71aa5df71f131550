#!/usr/bin/python3
"""Ansible module kastro_units: a role's systemd units enabled, started and restarted in one step.

``systemd_service`` is one module run per unit and per action (about a third of a second of
CPU each here, benchmarks/module_cost.py), and the restarts a role needs were handlers and
conditions in Jinja. This module reads every listed unit's state with one ``systemctl show``,
reloads systemd only when one of the units' files or drop-ins changed on disk (systemd's own
NeedDaemonReload, and a drop-in on disk that systemd has not loaded), then enables, starts,
restarts or reloads what the entries ask for.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kastro_units
short_description: Systemd units of a Kastro role in one step
description:
  - All units are looked up first; an unknown unit name fails the step before anything changes.
  - C(systemctl daemon-reload) runs once, before anything else, when any listed unit's file
    is new or changed on disk since systemd last read it, or when a drop-in in
    C(/etc/systemd/system/UNIT.d/) is not among the drop-ins systemd loaded (systemd does not
    flag a drop-in written in a directory that did not exist when it last read the unit).
  - A unit that this step starts is not restarted or reloaded as well (it already runs the
    new configuration).
options:
  units:
    description: The units, handled in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Unit name with its suffix (C(ssh.service), C(wg-quick@wg0.service)).
        type: str
        required: true
      enabled:
        description: Started at boot (true), not (false), or left as it is (unset).
        type: bool
      state:
        description: Running (started), not running (stopped), or left as it is (unset).
        type: str
        choices: [started, stopped]
      restart:
        description: Restart the unit if it was already running (a changed program or file).
        type: bool
        default: false
      reload:
        description: Reload the unit if it was already running (and restart is false).
        type: bool
        default: false
  daemon_reload:
    description:
      - Run C(systemctl daemon-reload) first whatever systemd reports (new and changed unit
        files and drop-ins are found without it).
    type: bool
    default: false
author: Kastro
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) done, as "action unit" strings, in order.
  type: list
  elements: str
  returned: always
"""

import re
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_.@-]*\.(service|timer|socket|path|target|mount)$")
_UNIT_SPEC = {
    "name": {"type": "str", "required": True},
    "enabled": {"type": "bool"},
    "state": {"type": "str", "choices": ["started", "stopped"]},
    "restart": {"type": "bool", "default": False},
    "reload": {"type": "bool", "default": False},
}
_PROPERTIES = "Id,LoadState,ActiveState,UnitFileState,NeedDaemonReload,DropInPaths"
# Where administrators' and roles' drop-ins go (systemd.unit(5)).
_DROPIN_ROOT = "/etc/systemd/system"
# What `systemctl is-enabled` would call enabled; static and generated units cannot be enabled.
_ENABLED = {"enabled", "enabled-runtime", "static", "generated", "indirect", "alias"}


class UnitError(ValueError):
    """A unit that cannot be handled; the message names it and the fix."""


def parse_show(text: str) -> list[dict[str, str]]:
    """`systemctl show -p A,B u1 u2` output: one dict per unit, in the order asked."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, _, value = line.partition("=")
        blocks[-1][key] = value
    return [block for block in blocks if block]


def plan(entry: dict[str, Any], unit: dict[str, str]) -> list[str]:
    """The systemctl verbs one entry needs, given its unit's current state."""
    verbs = []
    enabled = unit.get("UnitFileState", "") in _ENABLED
    if entry["enabled"] is True and not enabled:
        verbs.append("enable")
    if entry["enabled"] is False and enabled and unit.get("UnitFileState") != "static":
        verbs.append("disable")
    active = unit.get("ActiveState") in {"active", "activating", "reloading"}
    if entry["state"] == "stopped":
        return [*verbs, "stop"] if active else verbs
    if entry["state"] == "started" and not active:
        return [*verbs, "start"]
    if active and entry["restart"]:
        verbs.append("restart")
    elif active and entry["reload"]:
        verbs.append("reload")
    return verbs


def look_up(module: AnsibleModule, names: list[str]) -> list[dict[str, str]]:
    for name in names:
        if not _NAME.match(name):
            raise UnitError(f"{name!r} is not a unit name such as 'ssh.service'")
    rc, out, err = module.run_command(["systemctl", "show", "-p", _PROPERTIES, "--", *names])
    if rc != 0:
        raise UnitError(f"systemctl show failed: {(err or out).strip()}")
    units = parse_show(out)
    if len(units) != len(names):
        raise UnitError(f"systemctl show returned {len(units)} units for {len(names)} names")
    return units


def check_loaded(names: list[str], units: list[dict[str, str]], check_mode: bool) -> None:
    """Every unit known to systemd (in check mode, a unit file not yet read may be new)."""
    for name, unit in zip(names, units, strict=True):
        state = unit.get("LoadState") or "unknown"
        if state != "loaded" and not (check_mode and state == "not-found"):
            raise UnitError(
                f"{name}: το systemd δεν γνωρίζει τη μονάδα / systemd does not know this unit "
                f"({state}); is its package installed and its file written?"
            )


def systemctl(module: AnsibleModule, *argv: str) -> None:
    rc, out, err = module.run_command(["systemctl", *argv])
    if rc != 0:
        reason = (err or out).strip()
        module.fail_json(
            msg=f"systemctl {' '.join(argv)} απέτυχε / failed: {reason}. "
            f"See: journalctl -u {argv[-1]} -n 50"
        )


def dropins_on_disk(unit_id: str, root: str = _DROPIN_ROOT) -> set[str]:
    """The .conf drop-ins for this unit under root: its own directory and, for an instance
    (name@instance.service), its template's."""
    stem, dot, suffix = unit_id.rpartition(".")
    names = [unit_id]
    if "@" in stem and dot:
        names.append(f"{stem.partition('@')[0]}@.{suffix}")
    found = set()
    for name in names:
        directory = Path(root) / f"{name}.d"
        if directory.is_dir():
            found |= {str(path) for path in directory.glob("*.conf")}
    return found


def _stale(units: list[dict[str, str]], root: str = _DROPIN_ROOT) -> bool:
    """A unit file or drop-in written or changed since systemd last read them (or a unit not
    read at all): systemd's own flag, or a drop-in on disk that systemd has not loaded."""
    for unit in units:
        if unit.get("NeedDaemonReload") == "yes" or unit.get("LoadState") == "not-found":
            return True
        loaded = set(unit.get("DropInPaths", "").split())
        if dropins_on_disk(unit.get("Id", ""), root) - loaded:
            return True
    return False


def main() -> None:
    units_spec = {"type": "list", "elements": "dict", "required": True, "options": _UNIT_SPEC}
    module = AnsibleModule(
        argument_spec={"units": units_spec, "daemon_reload": {"type": "bool", "default": False}},
        supports_check_mode=True,
    )
    entries = module.params["units"]
    names = [entry["name"] for entry in entries]
    actions = []
    try:
        units = look_up(module, names)
        if module.params["daemon_reload"] or _stale(units):
            actions.append("daemon-reload")
            if not module.check_mode:
                systemctl(module, "daemon-reload")
                units = look_up(module, names)
        check_loaded(names, units, module.check_mode)
    except UnitError as err:
        module.fail_json(msg=str(err))
    steps = [(verb, e["name"]) for e, u in zip(entries, units, strict=True) for verb in plan(e, u)]
    if not module.check_mode:
        for verb, name in steps:
            systemctl(module, verb, name)
    actions += [f"{verb} {name}" for verb, name in steps]
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()
