"""`kastro teleworker add | revoke | rekey`: round-trip edits of the admin's file (comments and
order kept), validated and planned, put back when the result is not valid."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from kastro.cli import main
from kastro.inventory.project import validate_inventory
from tests.inventory_helpers import EXAMPLE

FILE = Path("group_vars/all/teleworkers.yml")


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    target = tmp_path / "inv"
    shutil.copytree(EXAMPLE, target)
    return target


def test_add_keeps_every_comment_and_line_and_plans_the_new_person(inventory, capsys):
    before = (inventory / FILE).read_text(encoding="utf-8")
    assert main(["teleworker", "add", "-i", str(inventory), "--name", "Maria Papadopoulou",
                 "--group", "finance"]) == 0  # fmt: skip
    after = (inventory / FILE).read_text(encoding="utf-8")
    assert after.startswith(before)  # nothing of the admin's text moved or vanished
    assert (
        after[len(before) :]
        == "  - id: tw-0007\n    name: Maria Papadopoulou\n    group: finance\n"
    )
    out = capsys.readouterr().out
    assert f"ansible-playbook -i {inventory} playbooks/telework.yml" in out
    planned = validate_inventory(inventory)  # planned too: the plan is current
    assert "tw-0007" in planned.result.data["teleworkers"]


def test_a_bad_add_puts_the_file_back_byte_for_byte(inventory, capsys):
    before = (inventory / FILE).read_bytes()
    argv = ["teleworker", "add", "-i", str(inventory), "--name", "X", "--group", "nosuch"]
    assert main(argv) == 1
    assert "nothing changed" in capsys.readouterr().err
    assert (inventory / FILE).read_bytes() == before
    validate_inventory(inventory)


def test_revoke_keeps_the_entry_and_a_second_revoke_says_so(inventory, capsys):
    assert main(["teleworker", "revoke", "tw-0001", "-i", str(inventory)]) == 0
    text = (inventory / FILE).read_text(encoding="utf-8")
    assert (
        "  - id: tw-0001\n    name: Eleni Kostopoulou\n    group: finance\n    state: revoked\n"
        in text
    )
    assert main(["teleworker", "revoke", "tw-0001", "-i", str(inventory)]) == 2
    assert "already revoked" in capsys.readouterr().err


def test_rekey_of_generated_keys_prints_the_run_and_changes_no_file(inventory, capsys):
    before = (inventory / FILE).read_bytes()
    assert main(["teleworker", "rekey", "tw-0003", "-i", str(inventory)]) == 0
    assert """-e '{"telework_rekey": ["tw-0003"]}'""" in capsys.readouterr().out
    assert (inventory / FILE).read_bytes() == before


def test_an_unknown_id_lists_the_known_ones(inventory, capsys):
    assert main(["teleworker", "revoke", "tw-9999", "-i", str(inventory)]) == 2
    assert "the ids are: tw-0001, tw-0002" in capsys.readouterr().err


def test_rekey_of_an_own_key_needs_the_new_key_and_writes_it(inventory, capsys):
    assert main(["teleworker", "rekey", "tw-0005", "-i", str(inventory)]) == 2
    assert "--public-key" in capsys.readouterr().err
    new = base64.b64encode(bytes(range(32))).decode()  # a WireGuard key's shape
    assert main(["teleworker", "rekey", "tw-0005", "-i", str(inventory), "--public-key", new]) == 0
    assert f'public_key: "{new}"' in (inventory / FILE).read_text(encoding="utf-8")
