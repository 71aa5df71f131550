"""plugins/modules/kastro_units.py: what it would do for each state a unit can be in.

The module's systemctl calls run in the Molecule scenarios (every role starts its units through
it, and their verify steps check the services run and restart on a change). Here: the parsing
of `systemctl show` (recorded output of systemd 252, Debian 12) and the decision per unit.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "kastro_units.py"
_SPEC = importlib.util.spec_from_file_location("kastro_units", MODULE)
assert _SPEC and _SPEC.loader
units = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(units)

# systemctl show -p Id,LoadState,ActiveState,UnitFileState,NeedDaemonReload ssh.service
#   kastro-monitor.service nosuch.service  (systemd 252)
RECORDED = """Id=ssh.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled
NeedDaemonReload=no

Id=kastro-monitor.service
LoadState=loaded
ActiveState=inactive
UnitFileState=disabled
NeedDaemonReload=yes

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
UnitFileState=
NeedDaemonReload=no
"""


def entry(**kwargs):
    return {"name": "x.service", "enabled": None, "state": None, "restart": False,
            "reload": False, **kwargs}  # fmt: skip


def test_show_output_is_one_dict_per_unit_in_order(tmp_path):
    parsed = units.parse_show(RECORDED)
    assert [u["Id"] for u in parsed] == ["ssh.service", "kastro-monitor.service", "nosuch.service"]
    assert parsed[1]["NeedDaemonReload"] == "yes"
    assert parsed[2]["UnitFileState"] == ""
    assert units._stale(parsed[:1], str(tmp_path)) is False
    assert units._stale(parsed[1:2], str(tmp_path)) is True  # changed on disk
    assert units._stale(parsed[2:], str(tmp_path)) is True  # never read (a file just written)


def test_a_drop_in_systemd_has_not_loaded_asks_for_a_daemon_reload(tmp_path):
    """systemd 252 does not flag a drop-in written in a directory that did not exist when it
    last read the unit (NeedDaemonReload=no): the drop-ins on disk are compared with its
    DropInPaths."""
    dropin = tmp_path / "prometheus.service.d" / "kastro.conf"
    unit = {"Id": "prometheus.service", "LoadState": "loaded", "NeedDaemonReload": "no",
            "DropInPaths": ""}  # fmt: skip
    assert units._stale([unit], str(tmp_path)) is False
    dropin.parent.mkdir()
    (dropin.parent / "notes.txt").write_text("not a drop-in")
    assert units._stale([unit], str(tmp_path)) is False
    dropin.write_text("[Service]\n")
    assert units._stale([unit], str(tmp_path)) is True
    loaded = {**unit, "DropInPaths": f"/usr/lib/systemd/system/service.d/10-x.conf {dropin}"}
    assert units._stale([loaded], str(tmp_path)) is False


def test_an_instance_has_its_own_and_its_templates_drop_ins(tmp_path):
    (tmp_path / "wg-quick@.service.d").mkdir()
    (tmp_path / "wg-quick@.service.d" / "go.conf").write_text("")
    (tmp_path / "wg-quick@wg0.service.d").mkdir()
    (tmp_path / "wg-quick@wg0.service.d" / "own.conf").write_text("")
    assert units.dropins_on_disk("wg-quick@wg0.service", str(tmp_path)) == {
        str(tmp_path / "wg-quick@.service.d" / "go.conf"),
        str(tmp_path / "wg-quick@wg0.service.d" / "own.conf"),
    }
    assert units.dropins_on_disk("ssh.service", str(tmp_path)) == set()


RUNNING = {"ActiveState": "active", "UnitFileState": "enabled"}
STOPPED = {"ActiveState": "inactive", "UnitFileState": "disabled"}


@pytest.mark.parametrize(
    ("wanted", "current", "verbs"),
    [
        (entry(enabled=True, state="started"), RUNNING, []),
        (entry(enabled=True, state="started"), STOPPED, ["enable", "start"]),
        # Started now: it already runs the new files, no restart on top.
        (entry(enabled=True, state="started", restart=True), STOPPED, ["enable", "start"]),
        (entry(state="started", restart=True), RUNNING, ["restart"]),
        (entry(state="started", reload=True), RUNNING, ["reload"]),
        (entry(state="started", restart=True, reload=True), RUNNING, ["restart"]),
        # Not asked to run: a restart is only for a unit that runs.
        (entry(restart=True), STOPPED, []),
        (entry(enabled=True), {"ActiveState": "inactive", "UnitFileState": "static"}, []),
        (entry(enabled=False, state="stopped"), RUNNING, ["disable", "stop"]),
        (entry(enabled=False), {"ActiveState": "inactive", "UnitFileState": "static"}, []),
        (entry(state="stopped"), STOPPED, []),
    ],
)
def test_each_unit_gets_only_the_verbs_it_needs(wanted, current, verbs):
    assert units.plan(wanted, current) == verbs


def test_unknown_units_are_refused_before_anything_changes():
    parsed = units.parse_show(RECORDED)
    names = ["ssh.service", "kastro-monitor.service", "nosuch.service"]
    with pytest.raises(units.UnitError, match=r"nosuch\.service"):
        units.check_loaded(names, parsed, check_mode=False)
    units.check_loaded(names, parsed, check_mode=True)  # may be a unit this run writes


class FakeModule:
    """Only for the name check, which refuses before any command runs."""

    def run_command(self, argv):
        raise AssertionError(f"ran {argv}")


@pytest.mark.parametrize("name", ["ssh", "a b.service", "--now.service", "x.service;reboot", ""])
def test_unit_names_are_checked_before_systemctl_sees_them(name):
    with pytest.raises(units.UnitError):
        units.look_up(FakeModule(), [name])


def test_no_task_runs_async_under_mitogen():
    """ansible.cfg runs the playbooks over Mitogen, whose async tasks hang with ansible-core
    2.19 (Molecule's podman driver showed it): Kastro's roles and playbooks use none."""
    import yaml

    found = []
    patterns = ["roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "playbooks/*.yml",
                "molecule/*/*.yml", "molecule/_lab/tasks/*.yml"]  # fmt: skip
    for path in (path for pattern in patterns for path in ROOT.glob(pattern)):
        text = yaml.safe_load(path.read_text()) or []
        stack = [text]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "async" in node or "poll" in node:
                    found.append(f"{path.relative_to(ROOT)}: {node.get('name')}")
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    assert not found
    assert "strategy = mitogen_linear" in (ROOT / "ansible.cfg").read_text()
