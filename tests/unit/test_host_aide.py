"""kastro-aide's report parsing, Kastro-or-foreign classification and metrics, on a report
written by the real AIDE 0.18 (tests/data/host-output/aide-check.txt: one added, one
removed, one changed file)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from kastro.host import aide as aide_module
from kastro.host.aide import (
    FIRST_ERROR,
    Report,
    classify,
    load_manifest,
    metrics_text,
    parse_report,
)

OUTPUT = Path(__file__).resolve().parents[1] / "data" / "host-output"
REPORT = (OUTPUT / "aide-check.txt").read_text()


def test_the_real_report_is_parsed_by_kind() -> None:
    report = parse_report(REPORT)
    assert report.added == ["/tmp/aidet/w/d"]
    assert report.removed == ["/tmp/aidet/w/b"]
    assert report.changed == ["/tmp/aidet/w/a"]


def test_a_clean_report_lists_nothing() -> None:
    assert parse_report("AIDE found NO differences between database and filesystem.") == Report()


def test_kastro_changes_are_told_from_foreign_ones(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    ours = tmp_path / "etc" / "kastro.conf"
    ours.write_text("written by kastro\n")
    theirs = tmp_path / "etc" / "sneaky.conf"
    theirs.write_text("someone else\n")
    tampered = tmp_path / "etc" / "tampered.conf"
    tampered.write_text("kastro wrote something else\n")
    manifest = {
        "/etc/kastro.conf": hashlib.sha256(b"written by kastro\n").hexdigest(),
        "/etc/tampered.conf": hashlib.sha256(b"what kastro wrote\n").hexdigest(),
        "/etc/gone.conf": "absent",
    }
    report = Report(
        added=["/etc/sneaky.conf"],
        removed=["/etc/gone.conf"],
        changed=["/etc/kastro.conf", "/etc/tampered.conf"],
    )
    verdict = classify(report, manifest, root=tmp_path)
    assert verdict.kastro == {"added": 0, "removed": 1, "changed": 1}
    assert verdict.foreign == {"added": 1, "removed": 0, "changed": 1}
    assert verdict.foreign_paths == ("/etc/sneaky.conf", "/etc/tampered.conf")
    assert not verdict.only_kastro


def test_metrics_say_foreign_changes_and_failed_checks() -> None:
    verdict = classify(parse_report(REPORT), {})
    text = metrics_text(verdict, exit_code=7, now=1000.0, updated=900.0)
    assert "kastro_aide_check_success 1" in text
    assert 'kastro_aide_files{change="changed",origin="foreign"} 1' in text
    assert "kastro_aide_baseline_updated_timestamp_seconds 900" in text
    assert "kastro_aide_check_success 0" in metrics_text(None, FIRST_ERROR + 3, 1.0, 1.0)


def test_manifest_missing_is_empty_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    assert load_manifest(tmp_path / "none.json") == {}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(["not", "a", "manifest"]))
    with pytest.raises(ValueError, match="manifest"):
        load_manifest(broken)


@pytest.mark.skipif(shutil.which("aide") is None, reason="needs Debian's aide")
def test_the_real_aide_updates_the_baseline_for_kastro_changes_only(tmp_path: Path) -> None:
    """init, a Kastro change (baseline follows), a foreign change (stays until accepted)."""
    watched = tmp_path / "etc"
    watched.mkdir()
    (watched / "kastro.conf").write_text("one\n")
    (watched / "other.conf").write_text("untouched\n")
    config = tmp_path / "aide.conf"
    config.write_text(
        f"database_in=file:{tmp_path}/aide.db\ndatabase_out=file:{tmp_path}/aide.db.new\n"
        f"report_url=stdout\n{watched} p+u+g+s+sha256\n"
    )
    manifest = tmp_path / "managed-files.json"
    paths = aide_module.Paths(config, tmp_path / "aide.db", tmp_path / "aide.db.new",
                              manifest, tmp_path / "metrics" / "kastro_aide.prom")  # fmt: skip
    assert aide_module.init(paths) == 0
    assert (tmp_path / "aide.db").stat().st_mode & 0o777 == 0o600

    (watched / "kastro.conf").write_text("two\n")  # what a converge writes, in the manifest
    digest = hashlib.sha256(b"two\n").hexdigest()
    manifest.write_text(json.dumps({"files": {str(watched / "kastro.conf"): digest}}))
    verdict = aide_module.check(paths, now=1.0)
    assert verdict is not None and verdict.kastro["changed"] == 1 and verdict.only_kastro
    assert aide_module.check(paths, now=2.0) == classify(Report(), {})  # baseline followed

    (watched / "other.conf").write_text("tampered\n")
    verdict = aide_module.check(paths, now=3.0)
    assert verdict is not None and verdict.foreign_paths == (str(watched / "other.conf"),)
    again = aide_module.check(paths, now=4.0)
    assert again is not None and again.foreign["changed"] == 1  # not accepted silently
    metrics = paths.metrics.read_text()
    assert 'kastro_aide_files{change="changed",origin="foreign"} 1' in metrics
    assert aide_module.accept(paths) == 0
    assert aide_module.check(paths, now=5.0) == classify(Report(), {})


def test_a_package_upgrade_is_not_a_foreign_change(tmp_path: Path) -> None:
    """A binary whose MD5 is dpkg's record came from a package (unattended upgrades);
    the same path with other content is foreign."""
    info = tmp_path / "info"
    info.mkdir()
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    tool = tmp_path / "usr" / "bin" / "tool"
    tool.write_bytes(b"new release\n")
    md5 = hashlib.md5(b"new release\n", usedforsecurity=False).hexdigest()
    (info / "tool.md5sums").write_text(f"{md5}  usr/bin/tool\n{'0' * 32}  usr/bin/other\n")
    packages = aide_module.package_digests({"/usr/bin/tool"}, info)
    assert packages == {"/usr/bin/tool": md5}
    report = Report(changed=["/usr/bin/tool"])
    assert classify(report, {}, tmp_path, packages).package["changed"] == 1
    tool.write_bytes(b"trojaned\n")
    assert classify(report, {}, tmp_path, packages).foreign_paths == ("/usr/bin/tool",)
