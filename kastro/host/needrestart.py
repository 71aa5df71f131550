"""kastro-needrestart: which services still run replaced libraries, and whether the running
kernel is the newest installed, as node_exporter textfile metrics.

Unattended upgrades replace libraries on disk; a daemon keeps the old (vulnerable) copy mapped
until it restarts, and a new kernel needs a reboot. Debian's `needrestart` finds both; its
batch output (`-b`, list only: `-r l`, nothing is restarted) is read here:

    NEEDRESTART-KSTA: 3          0 unknown, 1 current, 2 ABI-compatible update, 3 new version
    NEEDRESTART-SVC: ssh.service one line per service to restart
    NEEDRESTART-SESS: ...        one line per user session running old binaries

Metrics: kastro_needrestart_services, kastro_needrestart_service{service} (1 each),
kastro_needrestart_sessions, kastro_needrestart_kernel_status, kastro_needrestart_success,
kastro_needrestart_last_run_timestamp_seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SERVICE = re.compile(r"[A-Za-z0-9@._:\\-]{1,200}")


@dataclass
class Report:
    ok: bool
    kernel_status: int = 0
    services: list[str] = field(default_factory=list)
    sessions: int = 0


def parse_batch(text: str, exit_code: int) -> Report:
    report = Report(ok=exit_code == 0 and "NEEDRESTART-VER:" in text)
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        value = value.strip()
        if key == "NEEDRESTART-KSTA" and value.isdigit():
            report.kernel_status = int(value)
        elif key == "NEEDRESTART-SVC" and SERVICE.fullmatch(value):
            report.services.append(value)
        elif key == "NEEDRESTART-SESS":
            report.sessions += 1
    report.services = sorted(set(report.services))
    return report


def metrics_text(report: Report, now: float) -> str:
    lines = [
        "# HELP kastro_needrestart_success Whether needrestart ran (1) or failed (0).",
        "# TYPE kastro_needrestart_success gauge",
        f"kastro_needrestart_success {int(report.ok)}",
        "# HELP kastro_needrestart_services Services running replaced libraries or binaries.",
        "# TYPE kastro_needrestart_services gauge",
        f"kastro_needrestart_services {len(report.services)}",
        "# HELP kastro_needrestart_service A service that needs a restart (1).",
        "# TYPE kastro_needrestart_service gauge",
        *(f'kastro_needrestart_service{{service="{name}"}} 1' for name in report.services),
        "# HELP kastro_needrestart_sessions User sessions running replaced binaries.",
        "# TYPE kastro_needrestart_sessions gauge",
        f"kastro_needrestart_sessions {report.sessions}",
        "# HELP kastro_needrestart_kernel_status 1 current, 2 ABI-compatible update, 3 newer "
        "kernel installed (reboot), 0 unknown.",
        "# TYPE kastro_needrestart_kernel_status gauge",
        f"kastro_needrestart_kernel_status {report.kernel_status}",
        "# HELP kastro_needrestart_last_run_timestamp_seconds When needrestart last ran.",
        "# TYPE kastro_needrestart_last_run_timestamp_seconds gauge",
        f"kastro_needrestart_last_run_timestamp_seconds {now:.0f}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    from kastro.host.commands import run
    from kastro.host.textfile import write_text

    parser = argparse.ArgumentParser(prog="kastro-needrestart", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("/var/lib/prometheus/node-exporter/kastro_needrestart.prom"),
    )
    args = parser.parse_args(argv)
    done = run("needrestart", "-b", "-r", "l", check=False)
    report = parse_batch(done.stdout, done.returncode)
    text = metrics_text(report, time.time())
    write_text(args.metrics, text)
    for name in report.services:
        print(f"χρειάζεται επανεκκίνηση / needs a restart: {name}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
