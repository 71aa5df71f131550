"""plugins/modules/kastro_files.py, run by the real ansible-playbook against this machine.

The roles write their files through this one module, so what it promises is what every role
promises: nothing changes when an entry is wrong or a new file fails its check, a second run
changes nothing, check mode writes nothing.
"""

import grp
import os
import pwd
from pathlib import Path

import pytest

from tests.ansible_helpers import run_task

ROOT = Path(__file__).resolve().parents[2]
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
TASK = """    - name: The entries under test
      kastro_files:
        files: "{{ files }}"
        manifest: "{{ manifest }}"
"""


def run(tmp_path: Path, files: list[dict], *flags: str) -> dict:
    """The module's result for these entries (owner and group default to this user's)."""
    entries = [{"owner": USER, "group": GROUP, **entry} for entry in files]
    manifest = str(tmp_path / "managed-files.json")  # never this machine's /var/lib/kastro
    return run_task(tmp_path, TASK, {"files": entries, "manifest": manifest}, *flags)


def entries(base: Path) -> list[dict]:
    return [
        {"dest": str(base / "conf.d"), "state": "directory", "mode": "0750"},
        {"dest": str(base / "conf.d" / "a.conf"), "mode": "0640", "content": "alpha\n"},
        {"dest": str(base / "current"), "state": "link", "src": str(base / "conf.d" / "a.conf")},
    ]


def test_writes_what_differs_and_a_second_run_changes_nothing(tmp_path):
    base = tmp_path / "etc"
    base.mkdir()
    first = run(tmp_path, entries(base))
    assert first["changed"] and first["changed_files"] == [e["dest"] for e in entries(base)]
    assert (base / "conf.d" / "a.conf").read_text() == "alpha\n"
    assert (base / "conf.d").stat().st_mode & 0o7777 == 0o750
    assert (base / "conf.d" / "a.conf").stat().st_mode & 0o7777 == 0o640
    assert os.readlink(base / "current") == str(base / "conf.d" / "a.conf")
    second = run(tmp_path, entries(base))
    assert not second["changed"] and second["changed_files"] == []
    # Only the mode differs: only that file is reported.
    (base / "conf.d" / "a.conf").chmod(0o644)
    third = run(tmp_path, entries(base))
    assert third["changed_files"] == [str(base / "conf.d" / "a.conf")]
    assert (base / "conf.d" / "a.conf").stat().st_mode & 0o7777 == 0o640


def test_a_file_failing_its_check_leaves_every_file_as_it_was(tmp_path):
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    good.write_text("old\n")
    files = [
        {"dest": str(good), "mode": "0644", "content": "new\n", "validate": "grep -q new %s"},
        {"dest": str(bad), "mode": "0644", "content": "broken\n", "validate": "grep -q valid %s"},
    ]
    result = run(tmp_path, files)
    assert result["failed"]
    assert str(bad) in result["msg"] and "grep -q valid" in result["msg"]
    assert good.read_text() == "old\n"
    assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.json", "good.conf", "play.yml"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"owner": "no-such-user-kastro"}, "no-such-user-kastro"),
        ({"mode": "644; rm -rf /"}, "octal"),
        ({"dest": "relative/path"}, "absolute"),
        ({"state": "link", "src": "/nonexistent/zoneinfo/Mars"}, "/nonexistent/zoneinfo/Mars"),
        ({"dest": "/nonexistent-dir-kastro/x.conf"}, "does not exist"),
        ({"dest": "/tmp"}, "a directory is where the file belongs"),
    ],
)
def test_a_wrong_entry_is_refused_before_anything_changes(tmp_path, entry, says):
    first = tmp_path / "first.conf"
    files = [
        {"dest": str(first), "mode": "0644", "content": "first\n"},
        {"dest": str(tmp_path / "second.conf"), "mode": "0644", "content": "2\n", **entry},
    ]
    result = run(tmp_path, files)
    assert result["failed"] and says in result["msg"]
    assert not first.exists()


def test_check_mode_reports_and_writes_nothing(tmp_path):
    base = tmp_path / "etc"
    base.mkdir()
    result = run(tmp_path, entries(base), "--check", "--diff")
    assert result["changed"] and len(result["changed_files"]) == 3
    assert result["diff"][1]["after"] == "alpha\n"
    assert list(base.iterdir()) == []


def test_what_kastro_wrote_is_recorded_for_aide_and_check_mode_records_nothing(tmp_path):
    import hashlib
    import json

    base = tmp_path / "etc"
    base.mkdir()
    manifest = tmp_path / "managed-files.json"
    run(tmp_path, entries(base), "--check")
    assert not manifest.exists()
    run(tmp_path, entries(base))
    recorded = json.loads(manifest.read_text())["files"]
    assert recorded == {str(base / "conf.d" / "a.conf"): hashlib.sha256(b"alpha\n").hexdigest()}
    assert manifest.stat().st_mode & 0o777 == 0o600
    assert not run(tmp_path, entries(base))["changed"]  # the record is not a change


def test_a_file_another_task_copied_whole_is_recorded_without_a_change(tmp_path):
    import hashlib
    import json

    archive = tmp_path / "kastro-host.pyz"
    archive.write_bytes(b"PK\x03\x04 a binary archive\xff")
    manifest = tmp_path / "managed-files.json"
    task = TASK + '        record: ["{{ archive }}"]\n'
    variables = {"files": [], "manifest": str(manifest), "archive": str(archive)}
    result = run_task(tmp_path, task, variables)
    assert not result["changed"]
    recorded = json.loads(manifest.read_text())["files"]
    assert recorded == {str(archive): hashlib.sha256(archive.read_bytes()).hexdigest()}
