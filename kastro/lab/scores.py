"""The demo's scores: OpenSCAP ANSSI-BP-028 (enhanced, Kastro's tailoring) and the Lynis
hardening index of each managed lab host, measured inside the host.

The measuring tools (openscap-scanner, lynis) are installed in the lab containers for the
measurement; the roles never install them. A container shares the build machine's kernel, so
the kernel settings it reports are the machine's: the kernel-level score of a real host is
measured in the test VM (tests/vm). Never run against the build machine itself.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kastro.lab import hosts, lynis, scap

PROFILE = "anssi_bp28_enhanced"
TOOLS = ("openscap-scanner", "lynis")
MANAGED_ROLES = ("gateway", "server", "sensor")  # not the lab's home and attacker


def _exec(container: str, *argv: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "exec", container, *argv],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


def measure(container: str, datastream: Path, tailoring: Path) -> dict[str, str]:
    """One host: install the tools, scan, run Lynis; the row of the demo's table."""
    started = time.monotonic()
    installed = _exec(container, "sh", "-c",
                      "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                      f"--no-install-recommends {' '.join(TOOLS)}")  # fmt: skip
    if installed.returncode != 0:
        print(f"{container}: apt-get install {' '.join(TOOLS)} failed: {installed.stderr[-300:]}")
        return {"anssi_enhanced": "-", "lynis": "-", "seconds": "-"}
    for local, remote in ((datastream, "ssg-debian12-ds.xml"), (tailoring, "tailoring.xml")):
        subprocess.run(["podman", "cp", str(local), f"{container}:/root/{remote}"], check=True)
    _exec(container, "oscap", "xccdf", "eval", "--tailoring-file", "/root/tailoring.xml",
          "--profile", scap.tailored_profile(PROFILE), "--results", "/root/anssi.xml",
          "/root/ssg-debian12-ds.xml")  # fmt: skip
    results = _exec(container, "cat", "/root/anssi.xml").stdout
    try:
        anssi = f"{scap.score(results).percent:.1f} %"
    except scap.ScapError:
        anssi = "-"
    _exec(container, *lynis.COMMAND)
    report = _exec(container, "cat", lynis.REPORT).stdout
    try:
        index = str(lynis.parse_report(report).index)
    except lynis.LynisReportError:
        index = "-"
    return {"anssi_enhanced": anssi, "lynis": index, "seconds": f"{time.monotonic() - started:.0f}"}


def host_scores(lab: str, state: Path = scap.STATE) -> list[dict[str, str]]:
    """Every running managed host of the lab, two at a time (the machine has two cores)."""
    running = [h for h in hosts.list_hosts(lab) if h.state == "running"]
    managed = [h for h in running if h.role in MANAGED_ROLES]
    datastream = scap.datastream(state)
    with tempfile.TemporaryDirectory() as work:
        tailoring = Path(work) / "tailoring.xml"
        tailoring.write_text(scap.tailoring(PROFILE), encoding="utf-8")
        with ThreadPoolExecutor(max_workers=2) as pool:
            found = pool.map(lambda h: measure(h.container, datastream, tailoring), managed)
            rows = zip(managed, found, strict=True)
            return [{"host": h.name, "role": h.role, **row} for h, row in rows]
