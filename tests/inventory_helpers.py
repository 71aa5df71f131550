"""Helpers shared by the inventory tests: make a broken copy of the example municipality."""

import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventory" / "example"
BROKEN_DIR = ROOT / "tests" / "data" / "broken"
BROKEN_CASES = sorted(BROKEN_DIR.glob("*.yml"))


def load_case(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def without_ports(inventory: Path) -> Path:
    """A copy of the example without its gateways' ports (kastro_ports): for tests that add
    buildings or links to see what the plan does, not how the new cables are plugged in."""
    (inventory / "group_vars" / "all" / "ports.yml").unlink()
    return inventory


def broken_copy(case: dict[str, Any], target: Path) -> Path:
    """A copy of the example inventory with the case's edits applied (each must match once)."""
    shutil.copytree(EXAMPLE, target)
    for edit in case["edits"]:
        path = target / "group_vars" / "all" / edit["file"]
        text = path.read_text(encoding="utf-8")
        assert text.count(edit["replace"]) == 1, f"edit does not match once in {edit['file']}"
        path.write_text(text.replace(edit["replace"], edit["with"]), encoding="utf-8")
    return target
