"""Data flows one way: inventory -> model -> plan -> per-host state -> roles -> hosts.

Each package of kastro/ may import only the layers below it. The compilers for one feature
(firewall, links, telework) never import each other; what they share lives below them
(kastro.inventory.sides, kastro.nft). The host programs import nothing of the controller.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# kastro.i18n (the admin's language) sits below every layer: any may import it, but host (the
# programs on hosts carry the standard library only, no Babel).
ALLOWED = {
    "inventory": {"inventory", "i18n"},
    "firewall": {"inventory", "nft"},
    "links": {"inventory", "nft"},
    "telework": {"inventory"},
    # kastro.endpoint.mounts checks what it compiles with kastro-mounts' own checker (one
    # definition of what the host program accepts); host stays the bottom layer.
    "endpoint": {"inventory", "host"},
    "controller": {"inventory", "links", "firewall", "telework"},
    "monitoring": {"inventory", "controller"},
    "respond": {"inventory", "controller"},
    # The lab drives the demo, which ends with the SOC's own tool (kastro lab attack --contain).
    "lab": {"inventory", "lab", "text", "respond", "host"},
    "suricata": {"inventory", "controller", "host"},
    # `kastro backup` runs kastro-backup on the hosts as `kastro respond` runs kastro-firewall
    # (its transport), and the controller's own backup with the host program's code.
    "backup": {"inventory", "controller", "respond", "host"},
    "host": {"host"},
}


def imported_layers(package: str) -> set[str]:
    found = set()
    for path in (ROOT / "kastro" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found |= {n.split(".")[1] for n in names if n.startswith("kastro.")}
    return found - {package}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_layer_imports_only_what_is_below_it(package):
    below = {package} | ({"i18n"} if package != "host" else set())
    extra = imported_layers(package) - ALLOWED[package] - below
    assert not extra, f"kastro/{package} imports kastro.{', kastro.'.join(sorted(extra))}"
