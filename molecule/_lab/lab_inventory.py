#!/usr/bin/env python3
"""Ansible inventory script for Molecule scenarios that run on a `kastro lab`.

Molecule links it in as the scenario's `hosts`. It prints the municipality's groups
(kastro_hosts.yml written by `kastro apply`) merged with the lab's connection overlay (written by
`kastro lab up`), so roles see the same inventory as in `make demo`. Before the lab exists it
prints the groups alone. Environment: KASTRO_LAB (lab name), KASTRO_LAB_INVENTORY (directory).
"""

import json
import os
import sys
from pathlib import Path

import yaml


def walk(group: str, node: dict, groups: dict, hostvars: dict) -> None:
    entry = groups.setdefault(group, {"hosts": [], "children": []})
    for host, variables in (node.get("hosts") or {}).items():
        entry["hosts"].append(host)
        hostvars.setdefault(host, {}).update(variables or {})
    for child, sub in (node.get("children") or {}).items():
        entry["children"].append(child)
        walk(child, sub or {}, groups, hostvars)


def main() -> int:
    if "--host" in sys.argv:
        print("{}")
        return 0
    project = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."))
    municipality = Path(os.environ["KASTRO_LAB_INVENTORY"])
    overlay = project / ".kastro" / "lab" / os.environ["KASTRO_LAB"] / "inventory.yml"
    groups: dict = {}
    hostvars: dict = {}
    generated = yaml.safe_load((municipality / "kastro_hosts.yml").read_text())
    walk("all", generated["all"], groups, hostvars)
    if overlay.exists():
        walk("all", yaml.safe_load(overlay.read_text())["all"], groups, hostvars)
    print(json.dumps({**groups, "_meta": {"hostvars": hostvars}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
