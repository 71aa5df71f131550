"""Greek first (issue #25): every page an admin reads has a Greek page beside it, kept in step.

"In step" is checked where drift shows: the same sections (heading levels, in order), the same
number of code blocks and of tables, and each page links to the other. A section added to an
English page without its Greek fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GREEK = re.compile("[\u0370-\u03ff]")
# English page -> its Greek page.
PAGES = {
    "README.md": "docs/el/README.md",
    "docs/inventory.md": "docs/el/inventory.md",
    "docs/telework.md": "docs/el/telework.md",
    "docs/links.md": "docs/el/links.md",
    "roles/firewall/README.md": "docs/el/firewall.md",
    "docs/monitors.md": "docs/el/monitors.md",
    "docs/soc-response.md": "docs/el/soc-response.md",
    "docs/backup.md": "docs/el/backup.md",
}


def outline(path: Path) -> dict[str, list[int] | int]:
    """Heading levels in order, and how many code blocks and tables (outside code)."""
    levels, fences, tables, in_code, in_table = [], 0, 0, False, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fences += not in_code
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = re.match(r"(#{1,6}) ", line)
        if heading:
            levels.append(len(heading.group(1)))
        is_row = line.startswith("|")
        tables += is_row and not in_table
        in_table = is_row
    return {"headings": levels, "code blocks": fences, "tables": tables}


@pytest.mark.parametrize(("english", "greek"), PAGES.items(), ids=list(PAGES))
def test_every_english_page_has_a_greek_page_of_the_same_sections(english: str, greek: str):
    en, el = ROOT / english, ROOT / greek
    assert el.is_file(), f"{greek} is missing: write the Greek of {english}"
    assert outline(el) == outline(en), f"{greek} is out of step with {english}"
    text = el.read_text(encoding="utf-8")
    assert len(GREEK.findall(text)) > len(text) / 4, f"{greek} is not mostly Greek"
    assert _links_to(el, en) and _links_to(en, el), f"{english} and {greek} must link each other"


def _links_to(page: Path, other: Path) -> bool:
    targets = re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8"))
    return any((page.parent / target).resolve() == other.resolve() for target in targets)


def test_the_outline_sees_sections_code_and_tables(tmp_path: Path):
    page = tmp_path / "p.md"
    page.write_text("# T\n\n| a |\n| - |\n\n## S\n\n```sh\n# not a heading\n```\n\n### U\n")
    assert outline(page) == {"headings": [1, 2, 3], "code blocks": 1, "tables": 1}


def test_the_greek_pages_are_all_known():
    written = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "el").glob("*.md")}
    assert written <= set(PAGES.values()), "a Greek page without its English: add it to PAGES"


SECTIONS = {
    "kastro_municipality": "MUNICIPALITY_FIELDS",
    "kastro_buildings": "BUILDING_FIELDS",
    "kastro_links": "LINK_FIELDS",
    "kastro_nis2": "NIS2_FIELDS",
}


def field_tables(path: Path) -> dict[str, list[str]]:
    """Section -> the field names in the first column of its table, in order."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## `(kastro_[a-z0-9_]+)`", line)
        if heading:
            section = heading.group(1)
        elif line.startswith("## "):
            section = ""
        elif section in SECTIONS and line.startswith("| `"):
            out.setdefault(section, []).extend(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    return out


def test_the_field_tables_name_the_models_fields_in_both_languages():
    """docs/inventory.md's field tables name only fields the model reads (a field renamed or
    removed in kastro.inventory.model fails here), and the Greek tables the same fields in the
    same order (test_example_inventory checks that every field is documented)."""
    from kastro.inventory import model

    english = field_tables(ROOT / "docs" / "inventory.md")
    assert set(english) == set(SECTIONS)
    for section, names in english.items():
        known = set(getattr(model, SECTIONS[section]))
        assert set(names) <= known, f"{section}: {sorted(set(names) - known)} not in the model"
    assert field_tables(ROOT / "docs" / "el" / "inventory.md") == english
