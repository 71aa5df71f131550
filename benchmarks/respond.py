"""Benchmark: `kastro respond block` from command to verified block on N gateways.

    sudo .venv/bin/python benchmarks/respond.py --gateways 5,20,50 --repeat 10

Each gateway is a light host this script makes and removes: a network namespace with a veth
to this machine, Kastro's nftables sets, its own sshd (a key and host key made for the run)
and kastro-firewall from this checkout. Per N: the time from the call to every gateway's
answer showing the block (p50, p95), beside the peer measured in the same run: the same
command over plain `ssh`, one gateway after the other (what per-host tools do). Also: 50,000
entries loaded into a blocklist set in one nft transaction. Numbers, not a test; traffic only
between this machine and the namespaces it made.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kastro.respond import actions  # noqa: E402
from kastro.respond.decisions import DecisionStore  # noqa: E402
from kastro.respond.gateways import Gateway  # noqa: E402

TABLE = """
table inet kastro {
    set allowlist_v4 { type ipv4_addr; flags interval; elements = { 10.199.255.0/24 } }
    set allowlist_v6 { type ipv6_addr; flags interval; }
    set blocklist_v4 { type ipv4_addr; flags interval, timeout; }
    set blocklist_v6 { type ipv6_addr; flags interval, timeout; }
}
"""
SSHD = """HostKey {work}/host_key
AuthorizedKeysFile {work}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {work}/sshd-{name}.pid
ListenAddress {address}
MaxStartups 100
"""


def sh(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


class Lab:
    """N namespaces, each a gateway: veth 10.199.I.2/30 (this side .1), sshd, nft sets."""

    def __init__(self, work: Path, count: int) -> None:
        self.work, self.count = work, count
        self.names = [f"kbench-gw{i}" for i in range(count)]
        self.helper = work / "kastro-firewall"
        self.helper.write_text(
            f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m kastro.host.firewall "$@"\n'
        )
        self.helper.chmod(0o755)
        if not (work / "id").exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id"))
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key"))
            (work / "authorized_keys").write_text((work / "id.pub").read_text())
        known = (work / "host_key.pub").read_text().split()[:2]
        # A file per size: pyinfra reads a known_hosts file once per process.
        self.known_hosts = work / f"known_hosts-{count}"
        self.known_hosts.write_text(
            "".join(f"{self.address(i)} {' '.join(known)}\n" for i in range(count))
        )

    def address(self, i: int) -> str:
        return str(ipaddress.ip_address("10.199.0.0") + 4 * i + 2)

    def up(self) -> None:
        for i, name in enumerate(self.names):
            here, there = f"kbh{i}", f"kbn{i}"
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
            sh("ip", "link", "set", there, "netns", name)
            host_side = str(ipaddress.ip_address(self.address(i)) - 1)
            sh("ip", "addr", "add", f"{host_side}/30", "dev", here)
            sh("ip", "link", "set", here, "up")
            inside = ["ip", "netns", "exec", name]
            sh(*inside, "ip", "addr", "add", f"{self.address(i)}/30", "dev", there)
            sh(*inside, "ip", "link", "set", there, "up")
            sh(*inside, "ip", "link", "set", "lo", "up")
            sh(*inside, "nft", "-f", "-", input=TABLE)
            config = self.work / f"sshd-{name}.conf"
            config.write_text(SSHD.format(work=self.work, name=name, address=self.address(i)))
            # The session runs root's shell, which reads this machine's ~/.bashrc (ssh sets
            # SSH_CLIENT): hidden in this namespace's own mount namespace (ip netns exec
            # makes one, slave to the host's: nothing changes outside).
            empty = self.work / "empty.bashrc"
            empty.write_text("")
            start = f"mount --bind {empty} /root/.bashrc && exec /usr/sbin/sshd -f {config}"
            sh(*inside, "sh", "-c", start)

    def down(self) -> None:
        for i, name in enumerate(self.names):
            pid = self.work / f"sshd-{name}.pid"
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], check=False)
            subprocess.run(["ip", "link", "del", f"kbh{i}"], check=False, capture_output=True)
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)

    def gateways(self) -> list[Gateway]:
        return [
            Gateway(
                name,
                "bench",
                self.address(i),
                key=str(self.work / "id"),
                known_hosts=str(self.known_hosts),
                allowlist=["10.199.255.0/24"],
                helper=str(self.helper),
            )
            for i, name in enumerate(self.names)
        ]

    def one_by_one(self, target: str) -> None:
        """The peer: the same command over plain ssh, one gateway after another."""
        options = ["-i", str(self.work / "id"), "-o", f"UserKnownHostsFile={self.known_hosts}"]
        options += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        for i in range(self.count):
            command = [str(self.helper), "block", target, "--timeout", "10m"]
            sh("ssh", *options, f"root@{self.address(i)}", *command)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(work: Path, count: int, repeat: int) -> dict[str, float]:
    lab = Lab(work, count)
    try:
        lab.up()
        gateways = lab.gateways()
        store = DecisionStore(work / f"state-{count}")
        times, peer = [], []
        for r in range(repeat):
            target = ipaddress.ip_network(f"198.51.100.{r + 1}/32")
            started = time.perf_counter()
            report = actions.block(store, gateways, target, 600, "benchmark", "bench")
            times.append(time.perf_counter() - started)
            if not report.complete:
                print(f"  run {r}: incomplete {report.gateways}")
        for r in range(min(repeat, 3)):
            started = time.perf_counter()
            lab.one_by_one(f"203.0.113.{r + 1}")
            peer.append(time.perf_counter() - started)
        return {
            "p50": statistics.median(times),
            "p95": percentile(times, 0.95),
            "peer": statistics.median(peer),
        }
    finally:
        lab.down()


def set_load(work: Path, entries: int) -> float:
    name = "kbench-set"
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "netns", "exec", name, "nft", "-f", "-", input=TABLE)
        base = int(ipaddress.ip_address("100.64.0.0"))
        elements = ", ".join(
            f"{ipaddress.ip_address(base + 2 * i)} timeout 1h" for i in range(entries)
        )
        script = f"add element inet kastro blocklist_v4 {{ {elements} }}\n"
        started = time.perf_counter()
        sh("ip", "netns", "exec", name, "nft", "-f", "-", input=script)
        return time.perf_counter() - started
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", default="5,20,50")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("nft"):
        print("needs root (network namespaces) and nft")
        return 1
    with tempfile.TemporaryDirectory(prefix="kastro-respond-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o700)
        print(f"{'gateways':>8} {'p50 s':>7} {'p95 s':>7} {'one by one s':>13} {'speed-up':>9}")
        for count in (int(n) for n in args.gateways.split(",")):
            row = measure(work, count, args.repeat)
            print(
                f"{count:>8} {row['p50']:>7.2f} {row['p95']:>7.2f} {row['peer']:>13.2f} "
                f"{row['peer'] / row['p50']:>8.1f}x"
            )
        seconds = set_load(work, 50_000)
        print(f"50,000 entries into a blocklist set in one transaction: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
