"""What the internet really reaches: the lab's outside hosts try every published service.

For each published service (kastro_published, on its public addresses) `check` opens one TCP
connection per port from each of the lab's internet hosts (`home`, `attacker` on the first
ISP's network; `inet` behind the ISP routers when a building has two uplinks), and one to a
port of the same address that is not published, and compares what answered with what the model
says: open where the service's `from` admits the source, closed everywhere else. A host tries
only the addresses its routes lead to through the lab's own interfaces (never through its
management network's default route), each attempt is one connection with a 3-second timeout.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import netaddr

from kastro.inventory.project import load_model, read_previous_plan
from kastro.inventory.published import Forward, forwards
from kastro.lab.hosts import container_name, podman
from kastro.lab.topology import BACKBONE_IFACE, INTERNET_HOST, OUTSIDE_HOSTS, WAN_IFACE

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


# Each outside host's interface on the lab's internet side.
SOURCES = {**{name: WAN_IFACE for name in OUTSIDE_HOSTS}, INTERNET_HOST: BACKBONE_IFACE}


def _outside_address(lab: str, host: str, family: int) -> str:
    out = podman(
        "exec", container_name(lab, host), "ip", f"-{family}", "-o", "addr", "show", "dev",
        SOURCES[host], check=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        text = line.split()[3].split("/")[0]
        if not ipaddress.ip_address(text).is_link_local:
            return text
    return ""


def _routed_inside(lab: str, source: str, address: str) -> bool:
    """Whether `source` reaches `address` through its lab interface (the route the kernel
    would take), never through the management network, which leads out of the lab."""
    target = str(ipaddress.ip_address(address))
    proc = podman("exec", container_name(lab, source), "ip", "-j", "route", "get", target,
                  check=False)  # fmt: skip
    return proc.returncode == 0 and f'"dev":"{SOURCES[source]}"' in proc.stdout.replace(" ", "")


def _running(lab: str, host: str) -> bool:
    proc = podman("container", "exists", container_name(lab, host), check=False)
    return proc.returncode == 0


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
    for source in [s for s in SOURCES if _running(lab, s)]:
        mine = {family: _outside_address(lab, source, family) for family in (4, 6)}
        inside = {a for a in published_ports if _routed_inside(lab, source, a)}
        for f in found:
            if not mine[f.family] or f.public not in inside:
                continue
            for port in f.first_tcp_ports:
                attempts.append(
                    Attempt(f.name, f.public, port, source, _admits(f, mine[f.family]),
                            _connect(lab, source, f.public, port))
                )  # fmt: skip
        for address, ports in sorted(published_ports.items()):
            family = 6 if ":" in address else 4
            closed = next(p for p in UNPUBLISHED_CANDIDATES if p not in ports)
            if mine[family] and address in inside:
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
