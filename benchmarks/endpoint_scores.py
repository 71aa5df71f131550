"""Benchmark: the endpoint role's OpenSCAP score before and after, and what each step costs.

    python benchmarks/endpoint_scores.py

Boots the test VM (Debian 12 under QEMU TCG, kastro.lab.vm), scans it fresh with the
ANSSI-BP-028 enhanced profile (Kastro's tailoring), converges base + endpoint as the example's
file server, converges again (the idempotence cost), scans again, and prints the scores of the
enhanced and intermediary profiles with every step's wall time, then runs Lynis on the hardened
VM (a real kernel: the points a container cannot earn; 13 minutes under TCG, which is why it is
here and not in `make test`, where its load beside the podman worker's timed QoS test made that
test fail once). The peer is the fresh scan of the same VM in the same run. About 30 minutes.
Not a test; nothing here asserts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kastro.lab import lynis, scap, vm  # noqa: E402
from tests.vm.test_vm_endpoint import changed, converge  # noqa: E402

NAME = "endpoint-bench"
PROFILE = "anssi_bp28_enhanced"


def scan(machine: vm.Machine, datastream: Path) -> tuple[scap.Score, scap.Score, float]:
    tailoring = machine.directory / "tailoring.xml"
    tailoring.write_text(scap.tailoring(PROFILE), encoding="utf-8")
    machine.put(datastream, "/root/ssg-debian12-ds.xml")
    machine.put(tailoring, "/root/tailoring.xml")
    started = time.monotonic()
    machine.run(
        "oscap", "xccdf", "eval", "--tailoring-file", "/root/tailoring.xml",
        "--profile", scap.tailored_profile(PROFILE), "--results", "/root/results.xml",
        "/root/ssg-debian12-ds.xml", timeout=1800,
    )  # fmt: skip
    took = time.monotonic() - started
    results = machine.get("/root/results.xml")
    narrower = scap.profile_rules(datastream, "anssi_bp28_intermediary")
    return scap.score(results), scap.score(results, narrower), took


def main() -> None:
    state = ROOT / vm.STATE
    started = time.monotonic()
    image = vm.build(state)
    print(f"image ready            {time.monotonic() - started:6.0f} s")
    started = time.monotonic()
    machine = vm.up(NAME, image, state, memory_mb=3072)
    print(f"boot to SSH            {time.monotonic() - started:6.0f} s")
    try:
        datastream = scap.datastream(ROOT / scap.STATE)
        before = scan(machine, datastream)
        print(f"scan, fresh            {before[2]:6.0f} s")
        for run in ("first", "second"):
            started = time.monotonic()
            output = converge(machine, "fileserver")
            took = time.monotonic() - started
            print(f"converge, {run:6}       {took:6.0f} s  changed={changed(output, 'fileserver')}")
        after = scan(machine, datastream)
        print(f"scan, hardened         {after[2]:6.0f} s")
        for label, index in (("enhanced", 0), ("intermediary", 1)):
            old, new = before[index], after[index]
            print(
                f"ANSSI-BP-028 {label:12}  fresh {old.percent:5.1f} % -> hardened "
                f"{new.percent:5.1f} % of {new.applicable} applicable rules "
                f"({len(new.failed)} failing, all waived or the test fails)"
            )
        started = time.monotonic()
        machine.run(*lynis.COMMAND, timeout=2400)
        report = lynis.parse_report(machine.run("cat", lynis.REPORT).stdout)
        took = time.monotonic() - started
        print(f"Lynis, hardened        {took:6.0f} s  hardening index {report.index} "
              f"({report.tests} tests; the issue's goal: 85)")  # fmt: skip
        for test, got, possible in lynis.missed_points(machine.run("cat", lynis.LOG).stdout):
            print(f"  points {got}/{possible}: {test}")
    finally:
        vm.down(NAME, state)


if __name__ == "__main__":
    main()
