"""The demo's ISP outage: the first ISP of a building with two goes silent, and comes back.

`run` makes the lab's router of that building's first uplink forward nothing (its link stays
up: what a real outage often looks like), waits until the gateway's egress table (table 100,
kastro-uplinks) points at the second uplink, checks that the published services still answer
from the lab's internet host on the second ISP's addresses, then lets the first ISP forward
again and waits for the traffic to come back. Only the lab's own routers and hosts are
touched; the silence is removed even when a step fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import netaddr

from kastro.i18n import t
from kastro.inventory.project import load_model
from kastro.lab.hosts import LabError, container_name, podman
from kastro.lab.reach import check
from kastro.lab.topology import INTERNET_HOST, WAN_IFACE, failover_uplinks, isp_router

SILENCE = """table inet lab_silence
delete table inet lab_silence
table inet lab_silence {
    chain forward {
        type filter hook forward priority -10; policy drop;
    }
}
"""


@dataclass
class Outcome:
    building: str
    first: str
    second: str
    moved_after: float = 0.0  # seconds from the silence to the egress on the second uplink
    back_after: float = 0.0  # seconds from the first ISP's return to the egress back on it
    reached: list[str] = field(default_factory=list)  # published services answering meanwhile
    missed: list[str] = field(default_factory=list)


def _egress(lab: str, gateway: str) -> str:
    proc = podman("exec", container_name(lab, gateway), "ip", "route", "show", "default",
                  "table", "100", check=False)  # fmt: skip
    return proc.stdout


def _wait(lab: str, gateway: str, interface: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if f" dev {interface} " in _egress(lab, gateway) + " ":
            return time.monotonic() - start
        time.sleep(0.1)
    raise LabError(t("the traffic did not move to {iface} within {seconds} s",
                     iface=interface, seconds=int(timeout)))  # fmt: skip


def run(inventory: Path, lab: str, timeout: float = 30.0) -> Outcome:
    model = load_model(inventory)[0]
    pair = [up for rank, up in failover_uplinks(model) if rank < 2][:2]
    if len(pair) < 2:
        raise LabError(t("no building of this inventory has two uplinks"))
    first, second = pair
    gateway = model.gateway(first.building)
    if gateway is None:
        raise LabError(t("building {name} has no gateway", name=first.building))
    wan = WAN_IFACE  # the first uplink rides on kastro_interfaces.wan (the lab names it wan)
    outcome = Outcome(first.building, first.name, second.name)
    router = container_name(lab, isp_router(first))
    _wait(lab, gateway.name, wan, timeout)  # in use before the outage
    podman("exec", "-i", router, "nft", "-f", "-", stdin=SILENCE)
    try:
        outcome.moved_after = _wait(lab, gateway.name, second.interface, timeout)
        networks = [n for n in (second.network(4), second.network(6)) if n is not None]
        for attempt in check(inventory, lab):
            on_second = any(netaddr.IPAddress(attempt.address) in n for n in networks)
            if attempt.expected and attempt.source == INTERNET_HOST and on_second:
                label = f"{attempt.service} {attempt.address}:{attempt.port}"
                (outcome.reached if attempt.seen else outcome.missed).append(label)
    finally:
        podman("exec", router, "nft", "delete", "table", "inet", "lab_silence", check=False)
    outcome.back_after = _wait(lab, gateway.name, wan, timeout)
    return outcome
