"""ClamAV: the configuration Kastro compiles, kastro-clamav's scan with the real engine, and
freshclam fetching from a municipality's own mirror inside a namespace with no way out.

No public signature database can be fetched here (and none should be, in a test), so the
municipality's "internal mirror" serves a database of its own: one body signature cut from
Debian's clam.exe test program. The engine has to find it inside every file of
clamav-testfiles: packed executables (UPX, ASPack, FSG, ...), archives (zip, 7z, arj, cab,
tar, cpio), mail, office documents, PDF, installers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from kastro.endpoint.antivirus import antivirus_state, freshclam_config
from kastro.endpoint.profile import EndpointConfigError
from kastro.host import clamav
from kastro.host.clamav import Paths, metrics_text, parse_output

TESTFILES = Path("/usr/share/clamav-testfiles")
# The industry's antivirus test string, harmless by design.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
needs_clamav = pytest.mark.skipif(
    shutil.which("clamscan") is None or not TESTFILES.is_dir(),
    reason="needs clamav and clamav-testfiles (make deps installs them)",
)


def municipal_database(directory: Path) -> Path:
    """What the municipality's mirror serves: clam.exe's code and EICAR as body signatures."""
    code = (TESTFILES / "clam.exe").read_bytes()[0x40:0x80]
    path = directory / "municipal.ndb"
    path.write_text(
        f"Municipal.Test.ClamAVTestFile:0:*:{code.hex()}\nMunicipal.Test.EICAR:0:*:{EICAR.hex()}\n"
    )
    return path


def test_nothing_goes_to_clamav_net_without_a_mirror() -> None:
    text = freshclam_config({"endpoint_clamav_custom_urls": ["file:///srv/sigs/municipal.ndb"]})
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any("clamav.net" in line for line in settings)
    for name in ("main", "daily", "bytecode"):
        assert f"ExcludeDatabase {name}" in text
    assert "DatabaseCustomURL file:///srv/sigs/municipal.ndb" in text


def test_a_private_mirror_gets_the_official_databases() -> None:
    text = freshclam_config({"endpoint_clamav_mirror": "http://mirror.dimos.local/clamav"})
    assert "PrivateMirror http://mirror.dimos.local/clamav" in text
    assert "ExcludeDatabase" not in text


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("endpoint_clamav_mirror", "http://x/\nDatabaseMirror evil", "endpoint_clamav_mirror"),
        ("endpoint_clamav_mirror", "ftp://mirror", "endpoint_clamav_mirror"),
        ("endpoint_clamav_custom_urls", ["file:///a b.ndb"], "endpoint_clamav_custom_urls"),
        ("endpoint_clamav_custom_urls", ["http://m/x.exe"], "endpoint_clamav_custom_urls"),
        ("endpoint_clamav_custom_urls", "file:///a.ndb", "endpoint_clamav_custom_urls"),
        ("endpoint_clamav_paths", ["/"], "endpoint_clamav_paths"),
        ("endpoint_clamav_paths", ["/srv/../etc"], "endpoint_clamav_paths"),
        ("endpoint_clamav_paths", [], "endpoint_clamav_paths"),
        ("endpoint_clamav_signature_files", ["files/evil.sh"], "signature_files"),
        ("endpoint_clamav_signature_files", ["a/x.ndb", "b/x.ndb"], "signature_files"),
        ("endpoint_clamav_checks_per_day", 0, "endpoint_clamav_checks_per_day"),
        ("endpoint_clamav_checks_per_day", True, "endpoint_clamav_checks_per_day"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: object, field: str) -> None:
    with pytest.raises(EndpointConfigError, match=field):
        antivirus_state({name: value})


def test_freshclam_runs_only_when_there_is_a_source() -> None:
    assert antivirus_state({})["freshclam"] is False
    state = antivirus_state({"endpoint_clamav_checks_per_day": 4,
                             "endpoint_clamav_mirror": "https://m.local"})  # fmt: skip
    assert state["freshclam"] is True
    assert state["update_minutes"] == 360


def test_the_summary_and_detections_are_read() -> None:
    out = (
        "/srv/share/a b.pdf: Win.Test.EICAR_HDB-1 FOUND\n\n"
        "----------- SCAN SUMMARY -----------\nKnown viruses: 8701234\n"
        "Engine version: 1.4.6\nScanned directories: 3\nScanned files: 120\nInfected files: 1\n"
    )
    scan = parse_output(out, 1)
    assert scan.found == [("/srv/share/a b.pdf", "Win.Test.EICAR_HDB-1")]
    assert scan.counts == {"signatures": 8701234, "scanned": 120, "infected": 1}
    assert scan.ok
    text = metrics_text(scan, 100.0, 103.5, 50.0)
    assert "kastro_clamav_infected_files 1\n" in text
    assert "kastro_clamav_scan_duration_seconds 3.5\n" in text


@needs_clamav
def test_every_test_file_is_found_and_reported(tmp_path: Path) -> None:
    database = tmp_path / "db"
    database.mkdir()
    municipal_database(database)
    share = tmp_path / "share"
    shutil.copytree(TESTFILES, share / "downloads")
    (share / "invoice.txt").write_bytes(EICAR)
    (share / "clean.txt").write_text("Δήμος: πρακτικά συνεδρίασης\n")
    paths = Paths(database, tmp_path / "m" / "kastro_clamav.prom", tmp_path / "eve.json", tmp_path)
    expected = len(list(TESTFILES.iterdir())) + 1

    code = clamav.main([str(share), "--database", str(database), "--tempdir", str(tmp_path),
                        "--metrics", str(paths.metrics), "--eve", str(paths.eve)])  # fmt: skip

    assert code == 2
    metrics = paths.metrics.read_text()
    assert f"kastro_clamav_infected_files {expected}\n" in metrics
    assert f"kastro_clamav_scanned_files {expected + 1}\n" in metrics
    assert "kastro_clamav_scan_success 1\n" in metrics
    assert "kastro_clamav_signatures 2\n" in metrics
    alerts = [json.loads(line) for line in paths.eve.read_text().splitlines()]
    assert len(alerts) == expected
    assert {a["fileinfo"]["filename"] for a in alerts} >= {str(share / "invoice.txt")}
    assert all(a["event_type"] == "alert" and a["alert"]["severity"] == 1 for a in alerts)
    assert not any("clean.txt" in a["fileinfo"]["filename"] for a in alerts)


@needs_clamav
def test_no_signatures_is_a_failed_scan_not_a_clean_one(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    metrics = tmp_path / "kastro_clamav.prom"
    eve, database = tmp_path / "eve.json", tmp_path / "db"
    code = clamav.main(
        [str(tmp_path), "--database", str(database), "--metrics", str(metrics), "--eve", str(eve)]
    )
    assert code == 1
    assert "kastro_clamav_scan_success 0\n" in metrics.read_text()


@needs_clamav
def test_a_scan_that_cannot_unpack_is_a_failed_scan_not_a_clean_one(tmp_path: Path) -> None:
    """What a read-only /tmp did under systemd's ProtectSystem=strict: libclamav could not make
    its temporary directory, called every file "OK", and clamscan exited 0."""
    database = tmp_path / "db"
    database.mkdir()
    municipal_database(database)
    shutil.copy(TESTFILES / "clam.zip", tmp_path / "clam.zip")
    nowhere = tmp_path / "not-a-directory"
    nowhere.write_text("")
    metrics, eve = tmp_path / "kastro_clamav.prom", tmp_path / "eve.json"
    options = ["--tempdir", str(nowhere), "--metrics", str(metrics), "--eve", str(eve)]
    code = clamav.main([str(tmp_path / "clam.zip"), "--database", str(database), *options])
    assert code == 1
    assert "kastro_clamav_scan_success 0\n" in metrics.read_text()


@needs_clamav
@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and ip")
def test_freshclam_fetches_only_from_the_municipal_mirror() -> None:
    """Kastro's freshclam.conf in a namespace with loopback only: the database arrives from the
    mirror on 127.0.0.1; nothing else is asked (there is no way out, and the log says so)."""
    # freshclam drops to the clamav user: pytest's own temporary tree (0700) is closed to it.
    tmp_path = Path(tempfile.mkdtemp(prefix="kastro-freshclam-"))
    try:
        _fetch_from_mirror(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _fetch_from_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    municipal_database(mirror)
    database = tmp_path / "db"
    database.mkdir()
    shutil.chown(database, "clamav")
    tmp_path.chmod(0o755)
    log = tmp_path / "freshclam.log"
    config = freshclam_config(
        {"endpoint_clamav_custom_urls": ["http://127.0.0.1:8731/municipal.ndb"]}
    )
    config = config.replace("/var/lib/clamav", str(database))
    config = config.replace("/var/log/clamav/kastro-freshclam.log", str(log))
    (tmp_path / "freshclam.conf").write_text(config)
    log.touch()
    shutil.chown(log, "clamav")
    netns = f"kfc{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        inside = ["ip", "netns", "exec", netns]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        serve = ["python3", "-m", "http.server", "8731", "--bind", "127.0.0.1"]
        server = subprocess.Popen(
            [*inside, "timeout", "60", *serve, "--directory", str(mirror)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        fetch = ["freshclam", "--no-dns", f"--config-file={tmp_path / 'freshclam.conf'}"]
        done = subprocess.run(
            [*inside, "timeout", "60", *fetch],
            capture_output=True,
            text=True,
            check=False,
        )
        server.terminate()
        server.wait(timeout=10)
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (database / "municipal.ndb").read_bytes() == (mirror / "municipal.ndb").read_bytes()
    assert "clamav.net" not in log.read_text() + done.stdout + done.stderr
