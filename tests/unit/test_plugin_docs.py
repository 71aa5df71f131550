"""Kastro's own Ansible modules document themselves the way ansible-doc reads them: the
DOCUMENTATION and RETURN blocks are YAML (one was not: a colon at a line's end made
ansible-doc and ansible-lint fail to read kastro_files), and every entry's suboption the
module accepts is documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))
ENTRY_SPECS = {"kastro_files": ("_ENTRY_SPEC", "files"), "kastro_units": ("_UNIT_SPEC", "units")}


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"kastro_doc_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_documentation_is_yaml_and_names_the_module(path: Path) -> None:
    module = load(path)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == path.stem
    assert doc["short_description"] and doc["options"]
    assert isinstance(yaml.safe_load(module.RETURN), dict)
    attribute, option = ENTRY_SPECS[path.stem]
    accepted = set(getattr(module, attribute))
    documented = set(doc["options"][option]["suboptions"])
    assert accepted == documented, (
        f"undocumented {accepted - documented}, stale {documented - accepted}"
    )
