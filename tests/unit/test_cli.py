"""Command-line handling: bad arguments give a message and a non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kastro.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("kastro ")


@pytest.mark.parametrize("argv", [[], ["lab"], ["inventory"]])
def test_a_command_without_its_subcommand_shows_its_help(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(['kastro', *argv])} ")
    assert "positional arguments" in out


def test_kastro_lab_brings_its_own_podman_settings(monkeypatch, capsys):
    """`kastro lab ...` as the README types it, without the Makefile's CONTAINERS_CONF: podman
    (a child of this process) reads Kastro's settings; an admin's own file is kept."""
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    assert main(["lab", "status", "--lab", "kastro-unit-none"]) == 0
    chosen = os.environ["CONTAINERS_CONF"]
    assert chosen.endswith("kastro/lab/containers.conf") and Path(chosen).is_file()
    assert 'runtime = "runc"' in Path(chosen).read_text(encoding="utf-8")
    monkeypatch.setenv("CONTAINERS_CONF", "/etc/admins-own.conf")
    main(["lab", "status", "--lab", "kastro-unit-none"])
    assert os.environ["CONTAINERS_CONF"] == "/etc/admins-own.conf"


def test_unknown_inventory_names_the_path(capsys):
    assert main(["lab", "up", "/nonexistent/inventory", "--lab", "kastro-unit"]) == 1
    assert "inventory '/nonexistent/inventory' does not exist" in capsys.readouterr().err


def test_installed_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "kastro.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "lab" in proc.stdout


def test_export_format_says_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["inventory", "export", "--help"])
    assert "(default: csv)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [["validate"], ["plan", "--check"], ["apply"], ["inventory", "export"]]
)
def test_the_inventory_is_given_as_ansible_users_type_it_or_as_before(capsys, command):
    assert main([*command, "-i", "inventory/example"]) == 0
    assert main([*command, "inventory/example"]) == 0
    assert main(command) == 2
    assert "give the inventory directory: -i inventory/NAME" in capsys.readouterr().err
    assert main([*command, "inventory/example", "-i", "inventory/other"]) == 2
    assert "two inventories given" in capsys.readouterr().err


def test_validate_speaks_json_for_ci(tmp_path, capsys):
    import json
    import shutil

    assert main(["validate", "-i", "inventory/example", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    broken = tmp_path / "inv"
    shutil.copytree("inventory/example", broken)
    (broken / "group_vars/all/kastro_plan.yml").unlink()
    assert main(["validate", "-i", str(broken), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    (error,) = report["errors"]
    assert set(error) == {"file", "line", "path", "message", "fix"}
    assert "kastro apply" in error["fix"]


def _commands(parser=None, path=()):
    """Every command and subcommand of `kastro`, as argv prefixes."""
    import argparse

    from kastro.cli import build_parser

    parser = parser or build_parser()
    for action in parser._actions:  # argparse keeps its subparsers here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from _commands(sub, (*path, name))


COMMANDS = sorted(set(_commands()))


def test_the_walk_sees_every_command():
    assert {("plan",), ("apply",), ("show", "graph"), ("respond", "block"), ("lab", "up"),
            ("incident", "open"), ("teleworker", "rekey")} <= set(COMMANDS)  # fmt: skip
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_refuses_a_bad_argument(command, capsys):
    with pytest.raises(SystemExit) as helped:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert helped.value.code == 0 and out.startswith(f"usage: kastro {' '.join(command)}")
    with pytest.raises(SystemExit) as refused:
        main([*command, "--no-such-option"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "error:" in err and "Traceback" not in err
