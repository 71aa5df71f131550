"""What the internet really reaches: the lab's outside hosts try every published service.

For each published service (kastro_published, on its public addresses) `check` opens one TCP
connection per port from each of the lab's internet hosts (`home`, `attacker`), and one to a
port of the same address that is not published, and compares what answered with what the model
says: open where the service's `from` admits the source, closed everywhere else. Only the
lab's own hosts and addresses are involved, each attempt is one connection with a 3-second
timeout.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import netaddr

from kastro.inventory.project import load_model, read_previous_plan
from kastro.inventory.published import Forward, forwards
from kastro.lab.hosts import container_name, podman
from kastro.lab.topology import OUTSIDE_HOSTS

# One TCP connection, 3 s at most: prints "open" or "closed" (refused, dropped, unreachable).
CONNECT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except OSError:
    print("closed")
finally:
    s.close()
"""
UNPUBLISHED_CANDIDATES = (8080, 3389, 23, 21, 5900)


@dataclass(frozen=True)
class Attempt:
    service: str
    address: str
    port: int
    source: str  # a lab outside host
    expected: bool  # open
    seen: bool

    @property
    def ok(self) -> bool:
        return self.expected == self.seen


def _outside_address(lab: str, host: str, family: int) -> str:
    out = podman(
        "exec", container_name(lab, host), "ip", f"-{family}", "-o", "addr", "show", "dev", "wan",
        check=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        text = line.split()[3].split("/")[0]
        if not ipaddress.ip_address(text).is_link_local:
            return text
    return ""


def _connect(lab: str, source: str, address: str, port: int) -> bool:
    target = str(ipaddress.ip_address(address))  # nothing but an address on the command line
    proc = podman(
        "exec", container_name(lab, source), "python3", "-c", CONNECT, target, str(int(port)),
        check=False,
    )  # fmt: skip
    return proc.stdout.strip() == "open"


def _admits(forward: Forward, source_address: str) -> bool:
    if not forward.sources:
        return True
    return bool(source_address) and any(
        netaddr.IPAddress(source_address) in netaddr.IPNetwork(n) for n in forward.sources
    )


def check(inventory: Path, lab: str) -> list[Attempt]:
    """Every published TCP port of every public address, from each outside host, and one
    unpublished port per address."""
    variables = {**load_model(inventory)[1].data, "kastro_plan": read_previous_plan(inventory)}
    found = [f for f in forwards(variables) if f.public]
    attempts: list[Attempt] = []
    published_ports: dict[str, set[int]] = {}
    for f in found:
        published_ports.setdefault(f.public, set()).update(f.first_tcp_ports)
    for source in OUTSIDE_HOSTS:
        mine = {family: _outside_address(lab, source, family) for family in (4, 6)}
        for f in found:
            if not mine[f.family]:
                continue
            for port in f.first_tcp_ports:
                attempts.append(
                    Attempt(f.name, f.public, port, source, _admits(f, mine[f.family]),
                            _connect(lab, source, f.public, port))
                )  # fmt: skip
        for address, ports in sorted(published_ports.items()):
            family = 6 if ":" in address else 4
            closed = next(p for p in UNPUBLISHED_CANDIDATES if p not in ports)
            if mine[family]:
                attempts.append(
                    Attempt("-", address, closed, source, False,
                            _connect(lab, source, address, closed))
                )  # fmt: skip
    return attempts


def rows(attempts: list[Attempt]) -> list[dict[str, str]]:
    def said(open_: bool) -> str:
        return "ανοικτή/open" if open_ else "κλειστή/closed"

    return [
        {
            "service": a.service,
            "address": a.address,
            "port": f"tcp/{a.port}",
            "from": a.source,
            "expected": said(a.expected),
            "seen": said(a.seen),
            "": "ok" if a.ok else "!!",
        }
        for a in attempts
    ]
