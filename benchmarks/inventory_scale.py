"""Benchmark: what a large municipality costs Ansible's inventory.

    python benchmarks/inventory_scale.py                 # 300 buildings
    python benchmarks/inventory_scale.py --buildings 50 --buildings 300

Writes a synthetic inventory of N buildings (a gateway and four zones each, a file server in
every tenth, links in a ring with spurs), runs `kastro apply` on it, then times
`ansible-inventory --list` and reads its peak RSS from wait4. The peer measured in the same
run is the same command on the example municipality (6 buildings), so the ratios say how the
cost grows with size on this noisy machine. Goal (#14): 300 buildings in at most 10 s and
500 MB. Not a test; nothing here asserts.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventory" / "example"


def buildings(count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(count):
        name = "cityhall" if i == 0 else f"b{i:03d}"
        hosts: dict[str, Any] = {f"{name}-gw": {"role": "gateway"}}
        if i % 10 == 0:
            hosts[f"{name}-files"] = {"role": "server", "zone": "servers"}
        zones = {
            "staff": {"hosts": 40},
            "voip": {"hosts": 20},
            "guest": {"hosts": 60},
            "management": {"hosts": 6},
        }
        if i % 10 == 0:
            zones["servers"] = {"hosts": 20}
            zones["cctv"] = {"hosts": 10}
        if i % 10 == 5:
            zones["iot"] = {"hosts": 30}
        out[name] = {"zones": zones, "hosts": hosts}
        if i == 0:
            out[name]["city_hall"] = True
    return out


def links(names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a, b in itertools.pairwise(names):
        out[f"{a}-{b}"] = {"ends": [a, b], "medium": "fibre", "capacity_mbps": 1000}
    return out


def write_inventory(target: Path, count: int) -> Path:
    shutil.copytree(EXAMPLE, target)
    gv = target / "group_vars" / "all"
    (gv / "kastro_plan.yml").unlink(missing_ok=True)
    (target / "kastro_hosts.yml").unlink(missing_ok=True)
    model = buildings(count)
    (gv / "buildings.yml").write_text(yaml.safe_dump({"kastro_buildings": model}), encoding="utf-8")
    (gv / "links.yml").write_text(
        yaml.safe_dump({"kastro_links": links(list(model))}), encoding="utf-8"
    )
    municipality = yaml.safe_load((gv / "municipality.yml").read_text(encoding="utf-8"))
    municipality["kastro_municipality"]["monitoring_hosts"] = ["cityhall-files"]
    (gv / "municipality.yml").write_text(yaml.safe_dump(municipality), encoding="utf-8")
    return target


def kastro(*args: str) -> None:
    exe = Path(sys.executable).with_name("kastro")
    subprocess.run([str(exe), *args], check=True, stdout=subprocess.DEVNULL)


def measure_list(inventory: Path) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB and output bytes of `ansible-inventory --list`."""
    exe = Path(sys.executable).with_name("ansible-inventory")
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(exe), "-i", str(inventory), "--list"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - start
        if status != 0:
            raise SystemExit(f"ansible-inventory failed on {inventory}")
        size = out.tell()
    return seconds, usage.ru_maxrss / 1024, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--buildings",
        type=int,
        action="append",
        help="number of buildings (repeatable; default 300)",
    )
    args = parser.parse_args()
    sizes = args.buildings or [300]
    peer = measure_list(EXAMPLE)
    print(
        f"{'inventory':<22} {'hosts':>6} {'seconds':>8} {'peak MB':>8} {'output MB':>9}"
        f" {'x time':>7} {'x RSS':>6}"
    )
    print(
        f"{'example (6 buildings)':<22} {12:>6} {peer[0]:>8.2f} {peer[1]:>8.0f}"
        f" {peer[2] / 1e6:>9.2f} {1:>7.1f} {1:>6.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for count in sizes:
            inv = write_inventory(Path(tmp) / f"b{count}", count)
            start = time.monotonic()
            kastro("apply", str(inv))
            plan_s = time.monotonic() - start
            hosts = sum(len(b["hosts"]) for b in buildings(count).values())
            s, mb, size = measure_list(inv)
            print(
                f"{f'{count} buildings':<22} {hosts:>6} {s:>8.2f} {mb:>8.0f} {size / 1e6:>9.2f}"
                f" {s / peer[0]:>7.1f} {mb / peer[1]:>6.1f}   (kastro apply {plan_s:.1f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
