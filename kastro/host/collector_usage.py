"""kastro-collector-usage: how much disk each host's logs take on the event collector, as
node_exporter textfile metrics.

The collector writes every managed host's lines to /var/log/kastro/events/HOST/ (eve.json,
auth.log, audit.log and their rotated copies). A compromised host can send as much as it likes:
rsyslog has no per-host quota, and a full disk would stop every other host's logs. So each
host's share is measured here every few minutes, and KastroEventFlood (the monitoring rules)
fires when one grows faster than any honest host does: the SOC sees which host, and can
isolate it (`kastro respond isolate`) before the disk fills.

Metrics: kastro_collector_sender_bytes{sender} (every file of the host's directory, rotated and
compressed ones included), kastro_collector_sender_files{sender}, kastro_collector_usage_success,
kastro_collector_usage_last_run_timestamp_seconds (the label is "sender": "host" is the
scraped host's own, the collector's). A directory whose name is not a host name
(nothing the collector writes) is counted under sender="-", never used as a label as it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# The model's naming rule (kastro.inventory.model.NAME_RE; a test holds them equal). "unknown"
# is where the collector puts lines from an address no host has.
HOST = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]")
OTHER = "-"


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int


def host_usage(events: Path) -> dict[str, Usage]:
    """Bytes and files under each host's directory (symbolic links are not followed)."""
    found: dict[str, Usage] = {}
    for entry in sorted(os.scandir(events), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        name = entry.name if HOST.fullmatch(entry.name) else OTHER
        size, count = _tree(Path(entry.path))
        before = found.get(name, Usage(0, 0))
        found[name] = Usage(before.bytes + size, before.files + count)
    return found


def _tree(directory: Path) -> tuple[int, int]:
    size = count = 0
    for root, _dirs, files in os.walk(directory, followlinks=False):
        for file in files:
            try:
                info = (Path(root) / file).lstat()
            except FileNotFoundError:  # rotated away while we looked
                continue
            size += info.st_blocks * 512  # what it takes on disk (sparse files too)
            count += 1
    return size, count


def metrics_text(usage: dict[str, Usage] | None, now: float) -> str:
    """The text file; `usage` None when the directory could not be read."""
    rows = sorted((usage or {}).items())
    lines = [
        "# HELP kastro_collector_usage_success Whether the hosts' log directories were read.",
        "# TYPE kastro_collector_usage_success gauge",
        f"kastro_collector_usage_success {int(usage is not None)}",
        "# HELP kastro_collector_sender_bytes Disk space a host's logs take on the collector.",
        "# TYPE kastro_collector_sender_bytes gauge",
        *(f'kastro_collector_sender_bytes{{sender="{h}"}} {u.bytes}' for h, u in rows),
        "# HELP kastro_collector_sender_files Files of a host's logs on the collector.",
        "# TYPE kastro_collector_sender_files gauge",
        *(f'kastro_collector_sender_files{{sender="{h}"}} {u.files}' for h, u in rows),
        "# HELP kastro_collector_usage_last_run_timestamp_seconds When the usage was measured.",
        "# TYPE kastro_collector_usage_last_run_timestamp_seconds gauge",
        f"kastro_collector_usage_last_run_timestamp_seconds {now:.0f}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    from kastro.host.textfile import write_text

    parser = argparse.ArgumentParser(
        prog="kastro-collector-usage", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--events", type=Path, default=Path("/var/log/kastro/events"))
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("/var/lib/prometheus/node-exporter/kastro_collector_usage.prom"),
    )
    args = parser.parse_args(argv)
    try:
        usage: dict[str, Usage] | None = host_usage(args.events)
    except OSError as error:
        print(f"δεν διαβάζεται / cannot read {args.events}: {error.strerror}")
        usage = None
    write_text(args.metrics, metrics_text(usage, time.time()))
    return 0 if usage is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
