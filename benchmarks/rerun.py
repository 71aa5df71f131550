"""Benchmark: site.yml on the example municipality's lab, first run and a run with nothing to do.

    python benchmarks/rerun.py            # brings up its own lab (bench-rerun), removes it after
    python benchmarks/rerun.py --keep     # leaves the lab for a look
    python benchmarks/rerun.py --profile  # and the 25 slowest tasks of the second run

The first run builds everything on fresh hosts; the second must change nothing, and its time
is what an admin waits for on every routine run (goal, #14: at most 60 s for the 12 hosts on
this 2-core machine). The peers in the same run: the first run (the ratio second/first says
how much of a run is Ansible's fixed cost), and a third run with nothing to change under
Ansible's own linear strategy instead of ansible.cfg's Mitogen (what Mitogen saves). Not a
test; nothing here asserts, but the changed counts are printed (they must be 0). Traffic
stays inside the lab.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventory" / "example"


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def site(lab: str, profile: bool = False, strategy: str = "") -> tuple[float, int, str]:
    """Seconds, changed tasks (all hosts) and the recap of one site.yml run.

    strategy: Ansible's strategy plugin for this run; empty: ansible.cfg's (mitogen_linear)."""
    overlay = ROOT / ".kastro" / "lab" / lab / "inventory.yml"
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    env.pop("ANSIBLE_STRATEGY", None)
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    if profile:
        env |= {
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "25",
        }
    start = time.monotonic()
    proc = subprocess.run(
        [tool("ansible-playbook"), "-i", str(INVENTORY), "-i", str(overlay),
         str(ROOT / "playbooks" / "site.yml")],
        capture_output=True, text=True, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"site.yml failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    recap = proc.stdout[proc.stdout.rfind("PLAY RECAP") :]
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", recap))
    return seconds, changed, recap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="bench-rerun")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--profile", action="store_true", help="time each task of the second run")
    args = parser.parse_args()
    kastro = tool("kastro")
    subprocess.run([kastro, "lab", "up", str(INVENTORY), "--lab", args.lab], check=True,
                   stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        first, first_changed, _ = site(args.lab)
        second, second_changed, recap = site(args.lab, args.profile)
        linear, linear_changed, _ = site(args.lab, strategy="linear")
    finally:
        if not args.keep:
            subprocess.run([kastro, "lab", "down", "--lab", args.lab], check=False)
    print(f"{'run':<28} {'seconds':>8} {'changed':>8}")
    print(f"{'first (fresh hosts)':<28} {first:>8.1f} {first_changed:>8}")
    print(f"{'second (nothing to change)':<28} {second:>8.1f} {second_changed:>8}")
    print(f"{'third, linear strategy':<28} {linear:>8.1f} {linear_changed:>8}")
    print(f"ratio second/first: {second / first:.2f}   (goal for the second run: <= 60 s)")
    print(f"ratio second/third (Mitogen against the linear strategy): {second / linear:.2f}")
    if second_changed or args.profile:
        print(recap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
