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

from kastro.i18n import t
from kastro.inventory.errors import InventoryError

MODEL_KEYS = (
    "kastro_municipality",
    "kastro_buildings",
    "kastro_links",
    "kastro_services",
    "kastro_policy",
    "kastro_teleworker_groups",
    "kastro_teleworkers",
    "kastro_nis2",
    "kastro_backup",
    "kastro_published",
    "kastro_ports",
)
PLAN_KEY = "kastro_plan"
PLAN_FILE = Path("group_vars/all/kastro_plan.yml")
HOSTS_FILE = Path("kastro_hosts.yml")  # generated; the admin's own hosts.yml is never touched

Path_ = tuple[str | int, ...]

# Turns scalar nodes into Python values with YAML's safe rules (ints, bools, strings...).
_SCALARS = yaml.SafeLoader("")


def shown(text: str) -> str:
    """Text for a message: line breaks and control characters written as escapes, so an
    error about a name with a hidden newline stays on one visible line."""
    return "".join(
        repr(ch)[1:-1] if (ch.isspace() and ch != " ") or not ch.isprintable() else ch
        for ch in text
    )


def dotted(path: Path_) -> str:
    out = ""
    for depth, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
            if depth == 1 and path[0] == "kastro_policy":  # as the firewall's counters count
                out += f" (rule {part + 1})"
        else:
            out += ("." if out else "") + shown(part)
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


# Bounds on what one model file may build. A real municipality is a few thousand values and a
# dozen levels deep; an alias bomb (a few hundred bytes that expand to billions of values) or a
# recursive alias would otherwise cost minutes, gigabytes or a RecursionError.
MAX_VALUES = 200_000
MAX_DEPTH = 40


class _TooBigError(Exception):
    def __init__(self, node: yaml.Node, message: str, fix: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.message = message
        self.fix = fix


@dataclass
class _Budget:
    values: int = 0
    active: set[int] = field(default_factory=set)  # ids of the nodes being built (cycles)


def _construct(
    node: yaml.Node, path: Path_, file: str, src: Source, budget: _Budget | None = None
) -> Any:
    budget = budget if budget is not None else _Budget()
    budget.values += 1
    if budget.values > MAX_VALUES:
        raise _TooBigError(
            node,
            t(
                "expands to more than {max_values} values (YAML aliases repeating each other?)",
                max_values=MAX_VALUES,
            ),
            t("write the values out instead of nesting &anchors and *aliases"),
        )
    if len(path) > MAX_DEPTH:
        raise _TooBigError(
            node,
            t("is nested more than {max_depth} levels deep", max_depth=MAX_DEPTH),
            t("flatten the structure; the model is never more than a few levels deep"),
        )
    if id(node) in budget.active:
        raise _TooBigError(
            node,
            t("is an alias that contains itself (a recursive structure)"),
            t("remove the *alias that points back to its own &anchor"),
        )
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        budget.active.add(id(node))
        try:
            return _construct_collection(node, path, file, src, budget)
        finally:
            budget.active.discard(id(node))
    src.locations.setdefault(path, (file, node.start_mark.line + 1))
    return _SCALARS.construct_object(node, deep=True)


def _construct_collection(
    node: yaml.MappingNode | yaml.SequenceNode, path: Path_, file: str, src: Source, budget: _Budget
) -> Any:
    src.locations.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, (*path, "<key>"), file, src, budget)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                key = str(key)
            child = (*path, key)
            if key in result:
                line = key_node.start_mark.line + 1
                src.errors.append(
                    InventoryError(
                        file,
                        line,
                        dotted(child),
                        t("'{key}' is defined twice (YAML keeps only the last one)", key=key),
                        t("merge the two entries into one, or rename one of them"),
                    )
                )
            src.locations[child] = (file, key_node.start_mark.line + 1)
            result[key] = _construct(value_node, child, file, src, budget)
        return result
    return [_construct(item, (*path, i), file, src, budget) for i, item in enumerate(node.value)]


class UnreadableFileError(ValueError):
    """A generated YAML file that cannot be read within the bounds; the message says why."""


def load_bounded(path: Path) -> Any:
    """One YAML file with the model's bounds (aliases, depth). For generated files such as the
    plan, which need no per-value locations."""
    file = str(path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        return None if node is None else _construct(node, (), file, Source(path.parent))
    except _TooBigError as exc:
        raise UnreadableFileError(f"line {exc.line} {exc.message}") from exc
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(t("it is not UTF-8 text")) from exc
    except RecursionError as exc:
        raise UnreadableFileError(t("it is nested too deeply")) from exc
    except yaml.YAMLError as exc:
        raise UnreadableFileError(
            t("it is not valid YAML ({name})", name=exc.__class__.__name__)
        ) from exc
    except OSError as exc:
        raise UnreadableFileError(
            t("it cannot be read ({strerror})", strerror=exc.strerror)
        ) from exc


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
                t("is not a directory"),
                t("give the path of an inventory directory, e.g. inventory/example"),
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
                t("holds no model files"),
                t("describe the municipality in group_vars/all/*.yml (see docs/inventory.md)"),
            )
        )
        return src
    for path in files:
        if path.name == PLAN_FILE.name:
            continue
        file = str(path)
        if not path.is_file():
            src.errors.append(
                InventoryError(
                    file,
                    0,
                    "(file)",
                    t("is a directory or a broken link, not a model file"),
                    t("remove it from group_vars/all or point the link at a real file"),
                )
            )
            continue
        try:
            text = path.read_text(encoding="utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except OSError as exc:
            src.errors.append(
                InventoryError(
                    file,
                    0,
                    "(file)",
                    t("cannot be read ({strerror})", strerror=exc.strerror),
                    t("check its permissions"),
                )
            )
            continue
        except RecursionError:
            src.errors.append(
                InventoryError(
                    file,
                    0,
                    "(file)",
                    t("is nested too deeply to read"),
                    t("flatten the structure; the model is never more than a few levels deep"),
                )
            )
            continue
        except UnicodeDecodeError:
            src.errors.append(
                InventoryError(
                    file, 0, "(file)", t("is not UTF-8 text"), t("save the file as UTF-8")
                )
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
                    t("is not valid YAML: {problem}", problem=problem),
                    t("check the indentation and quoting around that line"),
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
                    t("must be a mapping of variable names to values"),
                    t("start the file with a variable name such as 'kastro_buildings:'"),
                )
            )
            continue
        budget = _Budget()  # one for the whole file, as MAX_VALUES says
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
                        t("is not a Kastro model variable"),
                        t(
                            "use one of: {model_keys} (or a role variable without the 'kastro_' "
                            "prefix)",
                            model_keys=", ".join(MODEL_KEYS),
                        ),
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
                        t("is already defined in {file}:{line}", file=earlier[0], line=earlier[1]),
                        t("keep each kastro_* variable in one file"),
                    )
                )
                continue
            src.locations[(key,)] = (file, key_node.start_mark.line + 1)
            try:
                src.data[key] = _construct(value_node, (key,), file, src, budget)
            except _TooBigError as exc:
                src.errors.append(InventoryError(file, exc.line, key, exc.message, exc.fix))
    return src
