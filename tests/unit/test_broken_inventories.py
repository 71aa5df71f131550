"""Every broken inventory in tests/data/broken gives exactly its expected errors, all at once."""

import re
from pathlib import Path

import pytest

from kastro.cli import main
from kastro.i18n import tr
from kastro.inventory.errors import InvalidInventoryError
from kastro.inventory.project import validate_inventory
from tests.inventory_helpers import BROKEN_CASES, broken_copy, load_case


def test_the_corpus_has_at_least_thirty_cases():
    assert len(BROKEN_CASES) >= 30


@pytest.mark.parametrize("case_file", BROKEN_CASES, ids=lambda p: p.stem)
def test_broken_inventory_reports_exact_errors(case_file: Path, tmp_path: Path):
    case = load_case(case_file)
    inventory = broken_copy(case, tmp_path / "inv")
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(inventory)
    got = [
        {
            "error": f"{e.file}:{e.line}" if e.line else e.file,
            "path": e.path,
            "message": e.message,
            "fix": e.fix,
        }
        for e in raised.value.errors
    ]
    actual = [
        {
            "error": f"{g['error'].replace(str(inventory) + '/', '')}: {g['path']}: {g['message']}",
            "fix": g["fix"],
        }
        for g in got
    ]
    expected = [
        {"error": e["error"], "fix": e["fix"].replace("{inventory}", str(inventory))}
        for e in case["expect"]
    ]
    assert actual == expected


@pytest.mark.parametrize("case_file", BROKEN_CASES[:3], ids=lambda p: p.stem)
def test_cli_exits_non_zero_and_says_nothing_changed(case_file: Path, tmp_path: Path, capsys):
    inventory = broken_copy(load_case(case_file), tmp_path / "inv")
    assert main(["validate", str(inventory)]) == 1
    err = capsys.readouterr().err
    assert "nothing was changed on any host" in err
    assert "    fix: " in err


GREEK = re.compile("[\u0370-\u03ff]")


@pytest.mark.parametrize("case_file", BROKEN_CASES, ids=lambda p: p.stem)
def test_every_error_and_fix_is_said_in_greek(case_file: Path, tmp_path: Path, monkeypatch):
    """Greek first (issue #25): each message and fix of the whole corpus has its Greek."""
    inventory = broken_copy(load_case(case_file), tmp_path / "inv")
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(inventory)
    monkeypatch.setenv("KASTRO_LANG", "el")
    for error in raised.value.errors:
        assert GREEK.search(tr(error.message)), f"no Greek for: {error.message!r}"
        assert GREEK.search(tr(error.fix)), f"no Greek for: {error.fix!r}"
