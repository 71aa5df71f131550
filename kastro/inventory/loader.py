"""Read the model's YAML files, remembering where every value came from.

The model lives in the inventory's ``group_vars/all/*.yml`` as variables named
``kastro_*`` (so Ansible hands the same data to every role). We parse those files with
a node-level walk of PyYAML so that each value's file and line are known for error
messages, and duplicate keys (which YAML silently collapses) are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kastro.inventory.errors import InventoryError

MODEL_KEYS = (
    "kastro_municipality",
    "kastro_buildings",
    "kastro_links",
    "kastro_services",
    "kastro_policy",
    "kastro_teleworker_groups",
    "kastro_teleworkers",
)
PLAN_KEY = "kastro_plan"
PLAN_FILE = Path("group_vars/all/kastro_plan.yml")
HOSTS_FILE = Path("hosts.yml")

Path_ = tuple[str | int, ...]

# Turns scalar nodes into Python values with YAML's safe rules (ints, bools, strings...).
_SCALARS = yaml.SafeLoader("")


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class Source:
    """Model data plus, for every path in it, the file and line it came from."""

    inventory: Path
    data: dict[str, Any] = field(default_factory=dict)
    locations: dict[Path_, tuple[str, int]] = field(default_factory=dict)
    errors: list[InventoryError] = field(default_factory=list)

    def where(self, path: Path_) -> tuple[str, int]:
        for end in range(len(path), 0, -1):
            if path[:end] in self.locations:
                return self.locations[path[:end]]
        return (str(self.inventory / "group_vars/all"), 0)

    def error(self, path: Path_, message: str, fix: str) -> None:
        file, line = self.where(path)
        self.errors.append(InventoryError(file, line, dotted(path), message, fix))


def _construct(node: yaml.Node, path: Path_, file: str, src: Source) -> Any:
    src.locations.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, (*path, "<key>"), file, src)
            if not isinstance(key, (str, int)):
                key = str(key)
            child = (*path, key)
            if key in result:
                line = key_node.start_mark.line + 1
                src.errors.append(
                    InventoryError(
                        file,
                        line,
                        dotted(child),
                        f"'{key}' is defined twice (YAML keeps only the last one)",
                        "merge the two entries into one, or rename one of them",
                    )
                )
            src.locations[child] = (file, key_node.start_mark.line + 1)
            result[key] = _construct(value_node, child, file, src)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), file, src) for i, item in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


def load_source(inventory: Path) -> Source:
    """Load every ``kastro_*`` variable from ``INVENTORY/group_vars/all``."""
    src = Source(inventory=inventory)
    directory = inventory / "group_vars" / "all"
    if not inventory.is_dir():
        src.errors.append(
            InventoryError(
                str(inventory),
                0,
                "(inventory)",
                "is not a directory",
                "give the path of an inventory directory, e.g. inventory/example",
            )
        )
        return src
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not files:
        src.errors.append(
            InventoryError(
                str(directory),
                0,
                "(inventory)",
                "holds no model files",
                "describe the municipality in group_vars/all/*.yml (see docs/inventory.md)",
            )
        )
        return src
    for path in files:
        if path.name == PLAN_FILE.name:
            continue
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except UnicodeDecodeError:
            src.errors.append(
                InventoryError(file, 0, "(file)", "is not UTF-8 text", "save the file as UTF-8")
            )
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 0
            problem = getattr(exc, "problem", None) or str(exc)
            src.errors.append(
                InventoryError(
                    file,
                    line,
                    "(file)",
                    f"is not valid YAML: {problem}",
                    "check the indentation and quoting around that line",
                )
            )
            continue
        if node is None:
            continue
        if not isinstance(node, yaml.MappingNode):
            src.errors.append(
                InventoryError(
                    file,
                    node.start_mark.line + 1,
                    "(file)",
                    "must be a mapping of variable names to values",
                    "start the file with a variable name such as 'kastro_buildings:'",
                )
            )
            continue
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if not key.startswith("kastro_"):
                continue  # other group variables (role settings) are not the model's business
            if key == PLAN_KEY:
                continue
            if key not in MODEL_KEYS:
                src.errors.append(
                    InventoryError(
                        file,
                        key_node.start_mark.line + 1,
                        key,
                        "is not a Kastro model variable",
                        f"use one of: {', '.join(MODEL_KEYS)} (or a role variable without the "
                        "'kastro_' prefix)",
                    )
                )
                continue
            if key in src.data:
                earlier = src.locations[(key,)]
                src.errors.append(
                    InventoryError(
                        file,
                        key_node.start_mark.line + 1,
                        key,
                        f"is already defined in {earlier[0]}:{earlier[1]}",
                        "keep each kastro_* variable in one file",
                    )
                )
                continue
            src.locations[(key,)] = (file, key_node.start_mark.line + 1)
            src.data[key] = _construct(value_node, (key,), file, src)
    return src
