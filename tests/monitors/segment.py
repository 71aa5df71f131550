"""One private Ethernet segment of network namespaces for the monitors' live tests.

Three hosts (attacker 10.78.0.66, reflector/server 10.78.0.53, victim 10.78.0.10) on a bridge
in a namespace of its own; nothing else is reachable from them. The victim runs the monitor on
its veth0 (TPACKET_V3 ring) and reports what it raised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NS = {"attacker": "kamp-attacker", "reflector": "kamp-reflector", "victim": "kamp-victim"}
ADDR = {"attacker": "10.78.0.66", "reflector": "10.78.0.53", "victim": "10.78.0.10"}
MAC = {
    "attacker": "02:78:00:00:00:66",
    "reflector": "02:78:00:00:00:53",
    "victim": "02:78:00:00:00:10",
}
SWITCH = "kamp-sw"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def ns_exec(role: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", NS[role], *argv]


def _cleanup() -> None:
    for name in (*NS.values(), SWITCH):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@contextmanager
def segment(victim_firewall: str = "") -> Iterator[None]:
    """The three hosts on one bridge, each with a veth, removed afterwards. `victim_firewall`:
    nft rules for the victim's input chain (a municipal host behind Kastro's firewall)."""
    _cleanup()
    try:
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", SWITCH, "link", "set", "br0", "up")
        for role, name in NS.items():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
            sh("ip", "-n", name, "link", "add", "veth0", "type", "veth", "peer", "name",
               role[:6], "netns", SWITCH)  # fmt: skip
            sh("ip", "-n", name, "link", "set", "veth0", "address", MAC[role])
            sh("ip", "-n", name, "addr", "add", f"{ADDR[role]}/24", "dev", "veth0")
            sh("ip", "-n", name, "link", "set", "veth0", "up")
            sh("ip", "-n", SWITCH, "link", "set", role[:6], "master", "br0")
            sh("ip", "-n", SWITCH, "link", "set", role[:6], "up")
        if victim_firewall:
            subprocess.run(
                ns_exec("victim", "nft", "-f", "-"),
                input="table inet victim {\n chain input {\n"
                f"  type filter hook input priority 0;\n  {victim_firewall}\n }}\n}}\n",
                text=True, check=True, timeout=10,
            )  # fmt: skip
        # Static neighbours: the first frames must not wait for ARP.
        for a, b in (("reflector", "victim"), ("attacker", "victim"), ("victim", "attacker")):
            sh("ip", "-n", NS[a], "neigh", "replace", ADDR[b], "lladdr", MAC[b], "dev", "veth0")
        yield
    finally:
        _cleanup()


@contextmanager
def monitor_at_victim(tmp_path: Path, seconds: int = 8) -> Iterator[list[dict[str, Any]]]:
    """The monitor on the victim's veth0 for `seconds`; the list fills with its EVE alerts
    when the block ends."""
    eve = tmp_path / "eve.json"
    alerts: list[dict[str, Any]] = []
    monitor = subprocess.Popen(
        ns_exec("victim", sys.executable, "-m", "monitors", "--iface", "veth0",
                "--duration", str(seconds), "--eve-log", str(eve)),
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    time.sleep(2)  # the ring is set up
    try:
        yield alerts
    finally:
        _, stderr = monitor.communicate(timeout=seconds + 30)
    assert monitor.returncode == 0, stderr
    alerts += [json.loads(line) for line in eve.read_text().splitlines()] if eve.exists() else []
