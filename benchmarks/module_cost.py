"""Benchmark: what one Ansible task costs on this machine, by kind.

    python benchmarks/module_cost.py            # 20 items of each kind
    python benchmarks/module_cost.py --items 50

Runs three loops on localhost (connection local, nothing leaves the machine): `debug` (runs on
the controller only: the peer, Ansible's own cost per item), `stat` (one module run on the
"host") and `copy` of unchanged content (a stat and a file module run, as every unchanged
copy or template task of a role costs). Prints seconds per item and the ratio to debug. This
is the floor under `rerun.py`: a run with nothing to change still pays one or two module runs
per task and host. Not a test; nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TASKS = {
    "debug": "ansible.builtin.debug:\n        msg: '{{ item }}'",
    "stat": "ansible.builtin.stat:\n        path: /etc/hostname",
    "copy": (
        'ansible.builtin.copy:\n        content: "same\\n"\n'
        "        dest: '{{ dir }}/f{{ item }}'\n        mode: '0644'"
    ),
}


def play(kind: str, items: int) -> str:
    return (
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        f"    - {TASKS[kind]}\n      loop: '{{{{ range({items}) | list }}}}'\n"
    )


def run(path: Path, directory: Path) -> float:
    exe = Path(sys.executable).with_name("ansible-playbook")
    start = time.monotonic()
    subprocess.run(
        [str(exe), "-i", "localhost,", str(path), "-e", f"dir={directory}"],
        check=True,
        capture_output=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        stdin=subprocess.DEVNULL,
    )
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        costs = {}
        for kind in TASKS:
            path = directory / f"{kind}.yml"
            path.write_text(play(kind, args.items))
            run(path, directory)  # warm caches; for copy, writes the files once
            empty = directory / f"{kind}-0.yml"
            empty.write_text(play(kind, 0))
            costs[kind] = (run(path, directory) - run(empty, directory)) / args.items
    print(f"{'task kind':<26} {'s per item':>10} {'x debug':>8}")
    for kind, cost in costs.items():
        print(f"{kind:<26} {cost:>10.3f} {cost / costs['debug']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
