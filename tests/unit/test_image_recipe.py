"""The image cache key and the mirror lookup (pure functions, no podman needed)."""

from pathlib import Path

from kastro.lab.image import BASE_PACKAGES, Recipe, debian_mirror


def test_same_recipe_same_tag():
    assert Recipe().tag == Recipe().tag


def test_package_order_does_not_change_the_tag():
    assert Recipe(packages=tuple(reversed(BASE_PACKAGES))).digest() == Recipe().digest()


def test_any_change_to_the_recipe_changes_the_tag():
    base = Recipe()
    variants = [
        Recipe(packages=(*BASE_PACKAGES, "tcpdump")),
        Recipe(setup_script=base.setup_script + "\ntrue\n"),
        Recipe(suite="trixie"),
        Recipe(variant="buildd"),
    ]
    assert len({base.digest(), *(v.digest() for v in variants)}) == len(variants) + 1


def test_mirror_from_deb822_sources(tmp_path: Path):
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
    )
    assert debian_mirror((sources,)) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources(tmp_path: Path):
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# comment\ndeb [arch=amd64] http://ftp.gr.debian.org/debian bookworm main contrib\n"
    )
    assert debian_mirror((sources,)) == "http://ftp.gr.debian.org/debian"


def test_mirror_falls_back_to_deb_debian_org(tmp_path: Path):
    assert debian_mirror((tmp_path / "missing.list",)) == "http://deb.debian.org/debian"
