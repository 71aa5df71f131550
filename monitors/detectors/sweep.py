"""Host discovery sweeps: ICMP echo (ping) or ARP requests to many addresses of a subnet.

Reasoning: mapping a network (nmap -sn, fping, arp-scan) means asking many distinct
addresses "are you there?" in a short time; normal hosts ping or ARP for a handful of
neighbours (gateway, servers). Distinct targets per source are counted with a fixed-size
sketch.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.alerts import Alert, mac_text
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ETH_ARP, PROTO_ICMP, PROTO_ICMPV6, Packet
from monitors.state import sketch_add, sketch_count

ECHO_REQUEST = {PROTO_ICMP: 8, PROTO_ICMPV6: 128}


@dataclass
class SweepConfig(DetectorConfig):
    window_seconds: float = 30.0
    min_targets: int = 20


class _Sweeper:
    __slots__ = ("last", "start", "targets")

    def __init__(self, start: float) -> None:
        self.start = start
        self.targets = 0
        self.last = b""


class SweepDetector(Detector):
    name = "sweep"
    config_class = SweepConfig
    wants = frozenset({"icmp", "arp"})
    config: SweepConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        if pkt.ethertype == ETH_ARP:
            if pkt.arp_op != 1 or pkt.src == pkt.arp_target_ip:  # requests only; not gratuitous
                return
            kind, sid = "ARP", 9100012
            key = b"a" + pkt.arp_sender_mac
        elif ECHO_REQUEST.get(pkt.proto) == pkt.sport:
            if pkt.dst[:1] == b"\xff" or pkt.dst[-1:] == b"\xff":  # multicast/broadcast pings
                return
            kind, sid = "ICMP", 9100011
            key = b"i" + pkt.src
        else:
            return
        state = self.table.get_or_create(key, lambda: _Sweeper(pkt.ts))
        if pkt.ts - state.start > self.config.window_seconds:
            state.__init__(pkt.ts)
        state.targets = sketch_add(state.targets, int.from_bytes(pkt.dst, "big"))
        state.last = pkt.dst
        count = sketch_count(state.targets)
        if count >= self.config.min_targets:
            evidence: dict[str, object] = {
                "distinct_targets": round(count),
                "window_seconds": self.config.window_seconds,
            }
            if kind == "ARP":
                evidence["sender_mac"] = mac_text(pkt.arp_sender_mac)
            emit(
                Alert(
                    detector=self.name,
                    signature_id=sid,
                    signature=f"KASTRO SCAN {kind} sweep of a subnet",
                    category="Attempted Information Leak",
                    severity=3,
                    ts=pkt.ts,
                    src=pkt.src,
                    dst=pkt.dst,
                    proto=0 if kind == "ARP" else pkt.proto,
                    proto_name="ARP" if kind == "ARP" else "",
                    evidence=evidence,
                    dedup=(pkt.src, b""),
                )
            )

    def expire(self, now: float) -> None:
        window = self.config.window_seconds
        self.table.expire(lambda s: now - s.start > 2 * window)
