"""Greek first (kastro/i18n.py): every message of the converted modules has its Greek, with the
same placeholders, and a Greek run of the real CLI prints Greek validation errors, fixes and
help; an English run prints what it always printed."""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from kastro.i18n import Joined, Text, t, tr

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "kastro" / "locale" / "el" / "LC_MESSAGES" / "kastro.po"
KEYWORDS = {"t": None, "_": None, "N_": None, "_inventory_argument": (2,)}
GREEK = re.compile("[\u0370-\u03ff]")


def extracted() -> set[str]:
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)
    return {message for _file, _line, message, _comments, _context in found}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_message_has_its_greek_with_the_same_placeholders():
    with PO.open("rb") as handle:
        catalog = {m.id: m for m in read_po(handle) if m.id}
    messages = extracted()
    missing = sorted(messages - set(catalog))
    assert not missing, f"no Greek for {missing[:5]}: add them to {PO.relative_to(ROOT)}"
    for message in messages:
        entry = catalog[message]
        assert entry.string and not entry.fuzzy, f"empty or fuzzy: {message!r}"
        assert fields(entry.string) == fields(message), f"placeholders differ: {message!r}"
        assert GREEK.search(entry.string), f"not Greek: {entry.string!r}"
    assert not sorted(set(catalog) - messages), "translations of messages no longer in the code"


def test_every_module_that_speaks_to_admins_is_extracted():
    with (ROOT / "babel.cfg").open() as handle:
        method_map, _ = parse_mapping_cfg(handle)
    patterns = [re.compile(re.escape(p).replace(r"\*\*", ".*").replace(r"\*", "[^/]*"))
                for p, _method in method_map]  # fmt: skip
    for path in sorted((ROOT / "kastro").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if "from kastro.i18n import" in path.read_text() and name != "kastro/i18n.py":
            assert any(p.fullmatch(name) for p in patterns), f"{name} is missing from babel.cfg"


def test_a_text_is_its_english_and_says_itself_in_greek(monkeypatch):
    message = t("'{name}' is not a valid zone name", name="Bad_Zone")
    assert isinstance(message, Text) and message == "'Bad_Zone' is not a valid zone name"
    monkeypatch.setenv("KASTRO_LANG", "el")
    assert tr(message) == "το 'Bad_Zone' δεν είναι έγκυρο όνομα ζώνης"
    assert tr("a message nobody translated") == "a message nobody translated"
    monkeypatch.setenv("KASTRO_LANG", "en")
    assert tr(message) == message
    risky = t("is risky: {problems}", problems=Joined(
        [t("has no public address"),
         t("guests reach municipal networks, not only the internet")]))  # fmt: skip
    assert risky == (
        "is risky: has no public address; guests reach municipal networks, not only the internet"
    )
    monkeypatch.setenv("KASTRO_LANG", "el")
    assert tr(risky) == (
        "είναι επικίνδυνος: δεν έχει δημόσια διεύθυνση; "
        "οι επισκέπτες φτάνουν σε δημοτικά δίκτυα, όχι μόνο στο διαδίκτυο"
    )


@pytest.mark.parametrize(
    ("environment", "greek"),
    [({"KASTRO_LANG": "el"}, True), ({"LANG": "el_GR.UTF-8"}, True),
     ({"LANGUAGE": "el:en", "LANG": "C"}, True), ({"LANG": "C.UTF-8"}, False),
     ({"KASTRO_LANG": "en", "LANG": "el_GR.UTF-8"}, False)],
)  # fmt: skip
def test_the_language_comes_from_kastro_lang_then_the_locale(environment, greek):
    output = kastro(environment, "--help")
    assert bool(GREEK.search(output.stdout)) is greek, output.stdout[:300]


def kastro(environment: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"KASTRO_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"}}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "kastro.cli", *argv], cwd=ROOT, capture_output=True, text=True,
        env={**clean, "PYTHONPATH": str(ROOT), **environment}, timeout=60, check=False,
    )  # fmt: skip


def broken_inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "tests" / "data" / "lab-small", inventory)
    model = inventory / "group_vars" / "all" / "model.yml"
    text = model.read_text()
    text = text.replace("      servers: {hosts: 10}\n", "      servers: {hosts: 10, colour: red}\n")
    text = text.replace("      management: {hosts: 4}\n", "      management: {hosts: four}\n")
    model.write_text(text)
    return inventory


def test_a_greek_run_prints_greek_errors_fixes_and_summary(tmp_path):
    inventory = broken_inventory(tmp_path)
    greek = kastro({"KASTRO_LANG": "el"}, "validate", "-i", str(inventory))
    english = kastro({"LANG": "C.UTF-8"}, "validate", "-i", str(inventory))
    assert greek.returncode == english.returncode == 1
    assert "hall.zones.servers.colour: δεν είναι γνωστό πεδίο" in greek.stderr, greek.stderr
    assert "διόρθωση: επιτρεπόμενα πεδία εδώ: " in greek.stderr
    assert "hall.zones.management.hosts: πρέπει να είναι" in greek.stderr
    assert "λάθη· τίποτα δεν άλλαξε σε κανέναν υπολογιστή" in greek.stderr
    assert "hall.zones.servers.colour: is not a known field" in english.stderr
    assert "fix: allowed fields here: " in english.stderr and not GREEK.search(english.stderr)


def test_greek_help_for_the_commands(tmp_path):
    top = " ".join(kastro({"KASTRO_LANG": "el"}, "--help").stdout.split())
    assert "Αυτοματοποίηση ασφάλειας και δικτύων για δήμους." in top
    assert "ελέγχει το inventory (όλα τα λάθη μαζί)" in top
    plan = " ".join(kastro({"KASTRO_LANG": "el"}, "plan", "--help").stdout.split())
    assert "κατάλογος του inventory, π.χ. inventory/example (ή -i ΚΑΤΑΛΟΓΟΣ)" in plan
    # argparse's own words, and the SOC's commands
    assert plan.startswith("χρήση: kastro plan") and "επιλογές:" in plan
    respond = " ".join(kastro({"KASTRO_LANG": "el"}, "respond", "block", "--help").stdout.split())
    assert "γιατί: κρατιέται στο αρχείο ελέγχου" in respond
    incident = " ".join(kastro({"KASTRO_LANG": "el"}, "incident", "--help").stdout.split())
    assert "σχέδιο της κοινοποίησης 72 ωρών" in incident
    wrong = kastro({"KASTRO_LANG": "el"}, "plan", "--no-such-flag")
    assert wrong.returncode == 2 and "σφάλμα: άγνωστα ορίσματα: --no-such-flag" in wrong.stderr


def test_a_greek_run_prints_greek_for_each_message_class(tmp_path):
    """Reports, command results and usage errors (validation errors, fixes and help: above)."""
    el = {"KASTRO_LANG": "el"}
    policy = kastro(el, "show", "policy", "-i", "inventory/example").stdout
    assert "Πολιτική:" in policy and "Οτιδήποτε άλλο μεταξύ ζωνών απορρίπτεται." in policy
    assert "Ποιες ζώνες μπορούν να φτάσουν ποιες" in kastro(el, "show", "matrix").stdout
    host = kastro(el, "show", "host", "fileserver").stdout
    assert "fileserver: server στο κτίριο cityhall" in host and "ρόλοι (playbooks" in host
    assert "το σχέδιο είναι ενημερωμένο" in kastro(el, "plan", "-i", "inventory/example").stdout
    valid = kastro(el, "validate", "-i", "inventory/example").stdout
    assert "έγκυρο" in valid and "κτίρια" in valid
    unknown = kastro(el, "show", "host", "museum")
    assert unknown.returncode == 2 and "δεν είναι υπολογιστής του μοντέλου" in unknown.stderr
    target = tmp_path / "dimos"
    made = kastro(el, "init", str(target), "--domain", "neos.gov.gr")
    assert "αρχικό inventory" in made.stdout and "(γράφει το σχέδιο" in made.stdout
    again = kastro(el, "init", str(target), "--domain", "neos.gov.gr")
    assert "το Kastro δεν αντικαθιστά ποτέ ένα inventory" in again.stderr


def test_a_text_survives_copies_and_pickles(monkeypatch):
    import copy
    import pickle

    said = Joined([t("is required"), t("is {n}, not a power of two between 8 and 1024", n=3)])
    for again in (copy.deepcopy(said), pickle.loads(pickle.dumps(said)), copy.copy(said)):
        assert again == said and isinstance(again, Joined)
        monkeypatch.setenv("KASTRO_LANG", "el")
        assert tr(again) == tr(said) and GREEK.search(tr(again))
        monkeypatch.setenv("KASTRO_LANG", "en")


def test_no_message_hides_inside_another_messages_values():
    """Babel extracts t("...") but not a t("...") among another call's values: such a message
    would never reach the catalog and stay English."""
    import ast

    for path in sorted((ROOT / "kastro").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("t", "_")):
                continue
            for value in [*node.args[1:], *(k.value for k in node.keywords)]:
                for inner in ast.walk(value):
                    if isinstance(inner, ast.Call) and getattr(inner.func, "id", "") == "t":
                        raise AssertionError(f"{path}:{inner.lineno}: a t() inside t()'s values")
