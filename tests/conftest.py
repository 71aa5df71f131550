"""Shared test settings: podman needs the project's containers.conf on these machines."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "kastro" / "lab" / "containers.conf"))
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
# Molecule writes its own ansible.cfg: the model's vars plugin reaches it through these.
os.environ.setdefault("ANSIBLE_VARS_PLUGINS", str(ROOT / "plugins" / "vars"))
os.environ.setdefault("ANSIBLE_VARS_ENABLED", "kastro_model")
os.environ.setdefault("ANSIBLE_LIBRARY", str(ROOT / "plugins" / "modules"))
os.environ.setdefault("ANSIBLE_ACTION_PLUGINS", str(ROOT / "plugins" / "action"))
os.environ.setdefault("ANSIBLE_FILTER_PLUGINS", str(ROOT / "plugins" / "filter"))
os.environ.setdefault("ANSIBLE_STRATEGY_PLUGINS", str(ROOT / "plugins" / "strategy"))


# `make test` runs two pytest-xdist workers, one per group: the podman hosts (Molecule's labs,
# then the shared lab: its hosts are up only for its own tests) on one, everything else (the
# QEMU VM first, then a few small Molecule scenarios, then monitors and unit) on the other.
# Each group's tests keep their order. A developer's plain `pytest` runs everything in one
# process, in the same order.
#
# Why that order (measured, CI of 2026-12-06): the VM's emulated CPU runs at nice 10 beside
# the lab's timed tests, and its 8-minute ANSSI scan, starved while the shared lab ran, did not
# finish in 20 minutes; beside Molecule's scenarios (mostly waiting) it gets the CPU it needs.
# The small scenarios below (no timed measurement, a lab name of their own) moved to the VM's
# worker after the VM (CI of 2026-12-07: that worker finished about 8 minutes before the other).
PODMAN_GROUP = ("tests/molecule/", "tests/lab/")
FIRST = ("tests/molecule/", "tests/vm/")
AFTER_THE_VM = tuple(
    f"tests/molecule/test_scenarios.py::test_molecule_scenario[{name}]"
    for name in ("base", "firewall-invalid", "host_programs", "monitor")
)


def _rank(nodeid: str) -> int:
    if nodeid.startswith(AFTER_THE_VM):
        return 1
    return 0 if nodeid.startswith(FIRST) else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(item.nodeid))


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """xdist's scope scheduling with two scopes, the groups above (its own `loadgroup` marks
    test ids, which pytest 9.2 no longer lets it change)."""
    from xdist.scheduler import LoadScopeScheduling

    class TwoGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            podman = nodeid.startswith(PODMAN_GROUP) and not nodeid.startswith(AFTER_THE_VM)
            return "podman" if podman else "local"

    return TwoGroups(config, log)
