"""Crafting test traffic with scapy, and running the monitor's engine over it."""

from __future__ import annotations

from collections.abc import Iterable

from scapy.all import (  # type: ignore[attr-defined]
    ARP,
    BOOTP,
    DHCP,
    DNS,
    DNSQR,
    ICMP,
    IP,
    TCP,
    UDP,
    Ether,
    IPv6,
    Raw,
)

from monitors.alerts import Alert, AlertSink
from monitors.config import MonitorConfig, parse_config
from monitors.engine import Engine

ATTACKER_MAC = "02:00:00:00:00:66"
VICTIM_MAC = "02:00:00:00:00:01"
LAB_HOME = ["10.0.0.0/8", "fd00::/8"]


def eth(src: str = ATTACKER_MAC, dst: str = VICTIM_MAC) -> Ether:
    return Ether(src=src, dst=dst)


def frames(packets: Iterable[tuple[float, object]]) -> list[tuple[float, bytes, int]]:
    out = []
    for ts, pkt in packets:
        data = bytes(pkt)  # type: ignore[call-overload]
        out.append((ts, data, len(data)))
    return out


def run(packets: Iterable[tuple[float, object]], config: dict | None = None) -> list[Alert]:
    cfg: MonitorConfig = parse_config({"home_networks": LAB_HOME, **(config or {})})
    written: list[Alert] = []
    sink = AlertSink(None, cfg.suppress_seconds, 1e9, on_write=written.append)
    engine = Engine(cfg.build_detectors(), sink)
    batch = frames(packets)
    for i in range(0, len(batch), 256):
        engine.process_batch(batch[i : i + 256])
    return written


def sids(alerts: list[Alert]) -> list[int]:
    return sorted({a.signature_id for a in alerts})


__all__ = [
    "ARP",
    "BOOTP",
    "DHCP",
    "DNS",
    "DNSQR",
    "ICMP",
    "IP",
    "TCP",
    "UDP",
    "IPv6",
    "Raw",
    "eth",
    "frames",
    "run",
    "sids",
]
