"""Command-line handling: bad arguments give a message and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest

from kastro.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("kastro ")


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_unknown_inventory_names_the_path(capsys):
    assert main(["lab", "up", "/nonexistent/inventory", "--lab", "kastro-unit"]) == 1
    assert "inventory '/nonexistent/inventory' does not exist" in capsys.readouterr().err


def test_installed_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "kastro.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "lab" in proc.stdout
