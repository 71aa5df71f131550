"""kastro-clamav: a scheduled ClamAV scan as metrics and EVE alerts.

Runs `clamscan` (the engine with its unpackers: archives, packed executables, mail, office
files) over the configured directories, then writes what it found:

- node_exporter textfile metrics: kastro_clamav_scan_success, kastro_clamav_scanned_files,
  kastro_clamav_infected_files, kastro_clamav_signatures, kastro_clamav_scan_duration_seconds,
  kastro_clamav_last_scan_timestamp_seconds, kastro_clamav_database_timestamp_seconds (the
  newest signature file: an old one means the mirror stopped updating);
- one EVE alert line per infected file (Suricata's fields; `kastro.detector: clamav`) appended
  to the endpoint's EVE log, for the SOC.

Files are reported, not moved: deleting a municipality's document on a false positive is worse
than an alert. clamscan exits 0 (clean), 1 (found) or 2 (an error, e.g. no signatures).
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kastro.host.textfile import write_text

FOUND = re.compile(r"^(?P<path>/.*): (?P<name>\S+) FOUND$")
SUMMARY = {
    "Known viruses": "signatures",
    "Scanned files": "scanned",
    "Infected files": "infected",
}
SIGNATURE_ID = 9200001
SIGNATURE_FILES = (".cvd", ".cld", ".cud", ".ndb", ".hdb", ".hsb", ".mdb", ".msb", ".ldb", ".cdb")


@dataclass
class Scan:
    """What one clamscan run reported."""

    exit_code: int
    found: list[tuple[str, str]] = field(default_factory=list)  # (path, signature)
    counts: dict[str, int] = field(default_factory=dict)
    errors: str = ""

    @property
    def ok(self) -> bool:
        # libclamav reports a file it could not unpack (no temporary directory, say) as "OK"
        # and may still exit 0: its error lines make the scan a failed one.
        return self.exit_code in (0, 1) and "scanned" in self.counts and not self.engine_errors

    @property
    def engine_errors(self) -> list[str]:
        return [line for line in self.errors.splitlines() if line.startswith("LibClamAV Error")]


def parse_output(text: str, exit_code: int) -> Scan:
    scan = Scan(exit_code)
    for line in text.splitlines():
        match = FOUND.match(line)
        if match:
            scan.found.append((match["path"], match["name"]))
            continue
        key, sep, value = line.partition(": ")
        if sep and key in SUMMARY and value.strip().isdigit():
            scan.counts[SUMMARY[key]] = int(value.strip())
    return scan


def database_timestamp(directory: Path) -> float:
    """The newest signature file's modification time (0 when there is none)."""
    times = [
        p.stat().st_mtime
        for p in directory.glob("*")
        if p.suffix in SIGNATURE_FILES and p.is_file()
    ]
    return max(times, default=0.0)


def metrics_text(scan: Scan, started: float, finished: float, database: float) -> str:
    rows = [
        ("scan_success", "Whether the last scan ran (1) or failed (0).", int(scan.ok)),
        ("scanned_files", "Files the last scan looked at.", scan.counts.get("scanned", 0)),
        ("infected_files", "Files the last scan found infected.", len(scan.found)),
        ("signatures", "Signatures the engine loaded.", scan.counts.get("signatures", 0)),
        ("scan_duration_seconds", "How long the last scan took.", round(finished - started, 3)),
        ("last_scan_timestamp_seconds", "When the last scan finished.", round(finished)),
        ("database_timestamp_seconds", "When the newest signature file changed.", round(database)),
    ]
    lines = []
    for name, text, value in rows:
        lines += [
            f"# HELP kastro_clamav_{name} {text}",
            f"# TYPE kastro_clamav_{name} gauge",
            f"kastro_clamav_{name} {value}",
        ]
    return "\n".join(lines) + "\n"


def eve_alert(path: str, signature: str, when: float, host: str) -> str:
    """One detection as an EVE alert line (ASCII JSON: no reader splits it)."""
    record = {
        "timestamp": datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
        "event_type": "alert",
        "host": host,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": SIGNATURE_ID,
            "rev": 1,
            "signature": f"KASTRO ClamAV: κακόβουλο αρχείο / malware file {signature}",
            "category": "Malware",
            "severity": 1,
        },
        "fileinfo": {"filename": path},
        "kastro": {"detector": "clamav", "clamav_signature": signature},
    }
    return json.dumps(record, ensure_ascii=True) + "\n"


@dataclass(frozen=True)
class Paths:
    database: Path
    metrics: Path
    eve: Path
    temporary: Path  # where archives are unpacked (the unit's own cache directory)


def scan(paths: Paths, targets: list[str]) -> Scan:
    import time

    from kastro.host.commands import run

    started = time.time()
    argv = ["clamscan", f"--database={paths.database}", f"--tempdir={paths.temporary}"]
    done = run(*argv, "--recursive", "--infected", "--stdout", "--", *targets, check=False)
    finished = time.time()
    result = parse_output(done.stdout, done.returncode)
    result.errors = done.stderr.strip()[-4000:]
    if result.found:
        host = socket.gethostname()
        with paths.eve.open("a", encoding="utf-8") as eve:
            for path, signature in result.found:
                eve.write(eve_alert(path, signature, finished, host))
    text = metrics_text(result, started, finished, database_timestamp(paths.database))
    write_text(paths.metrics, text)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="kastro-clamav", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", help="absolute paths to scan")
    parser.add_argument("--database", type=Path, default=Path("/var/lib/clamav"))
    parser.add_argument(
        "--metrics", type=Path, default=Path("/var/lib/prometheus/node-exporter/kastro_clamav.prom")
    )
    parser.add_argument("--eve", type=Path, default=Path("/var/log/kastro-clamav/eve.json"))
    parser.add_argument("--tempdir", type=Path, default=Path("/var/cache/kastro-clamav"))
    args = parser.parse_args(argv)
    relative = [t for t in args.targets if not t.startswith("/")]
    if relative:
        parser.error(f"not absolute paths / όχι απόλυτες διαδρομές: {' '.join(relative)}")
    existing = [t for t in args.targets if Path(t).exists()]
    paths = Paths(args.database, args.metrics, args.eve, args.tempdir)
    result = scan(paths, existing or args.targets)
    for path, signature in result.found:
        print(f"μολυσμένο / infected: {path}: {signature}")
    if not result.ok:
        print(f"η σάρωση απέτυχε / the scan failed: {result.errors}", file=sys.stderr)
        return 1
    return 2 if result.found else 0


if __name__ == "__main__":
    raise SystemExit(main())
