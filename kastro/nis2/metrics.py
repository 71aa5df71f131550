"""The incidents' clocks as metrics, for node_exporter's textfile collector (nis2.prom beside
the log), written after every command that changes the log:

  kastro_nis2_deadline_timestamp_seconds{incident, stage}   each report still owed, when due
  kastro_nis2_incidents{state}                              open and closed incidents

A file read later must not go stale, so it holds the due *times*; the rules
(kastro/monitoring/rules.yml, group kastro-nis2) turn them into
kastro_nis2_deadline_seconds_remaining and alert at 6 h and at 1 h before each deadline.
"""

from __future__ import annotations

import os
from pathlib import Path

from kastro.nis2.incidents import Book

METRICS_FILE = "nis2.prom"


def text(book: Book) -> str:
    lines = [
        "# HELP kastro_nis2_deadline_timestamp_seconds When a NIS2 report still owed is due.",
        "# TYPE kastro_nis2_deadline_timestamp_seconds gauge",
    ]
    counts = {"open": 0, "closed": 0}
    for name, incident in sorted(book.incidents().items()):
        owed = incident.outstanding()
        counts["closed" if incident.closed and not owed else "open"] += 1
        lines += [
            f'kastro_nis2_deadline_timestamp_seconds{{incident="{name}",stage="{due.stage}"}} '
            f"{int(due.at.timestamp())}"
            for due in owed
        ]
    lines += [
        "# HELP kastro_nis2_incidents NIS2 incidents by state (open: a report is still owed).",
        "# TYPE kastro_nis2_incidents gauge",
        *(f'kastro_nis2_incidents{{state="{state}"}} {n}' for state, n in counts.items()),
    ]
    return "\n".join(lines) + "\n"


def write(book: Book, directory: Path) -> Path:
    """nis2.prom, replaced atomically (the collector never reads half a file)."""
    target = directory / METRICS_FILE
    temporary = directory / f".{METRICS_FILE}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text(book))
    temporary.replace(target)
    return target
