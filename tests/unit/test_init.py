"""`kastro init`: a new municipality starts from a commented inventory that validates, plans
and can be shown; bad names never write anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from kastro.cli import main
from kastro.inventory.project import validate_inventory


def test_a_new_municipality_validates_and_says_what_to_do_next(tmp_path: Path, capsys):
    target = tmp_path / "dimos-neou"
    assert main(["init", str(target), "--domain", "neos.gov.gr", "--title", "Δήμος Νέου"]) == 0
    out = capsys.readouterr().out
    assert f"kastro plan -i {target} " in out and f"kastro apply -i {target} " in out
    planned = validate_inventory(target)
    assert planned.model.municipality is not None
    assert planned.model.municipality.name == "Δήμος Νέου"
    assert [h.name for h in planned.model.hosts] == ["cityhall-gw"]
    for path in (target / "group_vars" / "all").glob("[!k]*.yml"):  # not the generated plan
        assert "docs/inventory.md" in path.read_text(encoding="utf-8"), path
    assert (target / "kastro_hosts.yml").exists() and (target / "hosts.yml").exists()
    assert main(["show", "host", "cityhall-gw", "-i", str(target)]) == 0


def test_an_existing_inventory_is_never_overwritten(tmp_path: Path, capsys):
    target = tmp_path / "dimos-neou"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    assert main(["init", str(target), "--domain", "neos.gov.gr"]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize(
    ("name", "extra", "said"),
    [("Dimos", [], "lower-case"), ("dimos", ["--domain", "not a domain"], "--domain"),
     ("dimos", ["--title", "two\nlines"], "--title")],
)  # fmt: skip
def test_bad_names_write_nothing(tmp_path: Path, capsys, name, extra, said):
    argv = ["init", str(tmp_path / name), "--domain", "neos.gov.gr", *extra]
    assert main(argv) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / name).exists()
