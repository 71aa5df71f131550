"""The monitor's main loop: frames -> packets -> detectors -> alerts and metrics."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from monitors.alerts import Alert, AlertSink
from monitors.detectors.base import Detector
from monitors.metrics import BATCH_BUCKETS
from monitors.packet import (
    ACK,
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_NAMES,
    PROTO_TCP,
    PROTO_UDP,
    SYN,
    MalformedPacketError,
    Packet,
    parse,
)
from monitors.state import Conversations

KINDS = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}
EXPIRE_EVERY_SECONDS = 10.0  # of traffic time; windows are 2 s to minutes, so this is timely


@dataclass
class Stats:
    packets: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    malformed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    alerts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    batches: int = 0
    batch_seconds: float = 0.0
    batch_buckets: list[int] = field(default_factory=lambda: [0] * len(BATCH_BUCKETS))
    kernel_packets: int = 0
    kernel_drops: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0

    @property
    def total_packets(self) -> int:
        return sum(self.packets.values()) + sum(self.malformed.values())


class Engine:
    def __init__(self, detectors: list[Detector], sink: AlertSink) -> None:
        self.detectors = detectors
        self.sink = sink
        self.stats = Stats()
        # Dispatch lists: each packet goes only to the detectors that want its kind.
        self._by_kind: dict[str, list[Detector]] = {
            kind: [d for d in detectors if kind in d.wants or (kind != "arp" and "ip" in d.wants)]
            for kind in (
                "tcp_syn",
                "tcp_ack",
                "tcp",
                "tcp_dns",
                "udp",
                "icmp",
                "fragment",
                "arp",
                "ip",
            )
        }
        self._next_expiry = 0.0
        self.conversations = Conversations()

    def _emit(self, alert: Alert) -> None:
        if self.sink.emit(alert):
            severity = {1: "high", 2: "medium", 3: "low"}.get(alert.severity, "low")
            self.stats.alerts[(alert.detector, severity)] += 1

    def process_batch(self, frames: Iterable[tuple[float, bytes, int]]) -> None:
        started = time.perf_counter()
        stats = self.stats
        by_kind = self._by_kind
        emit = self._emit
        answer = self.conversations.answer
        packets, nbytes, malformed = stats.packets, stats.bytes, stats.malformed
        ts = 0.0
        for ts, frame, wirelen in frames:
            try:
                pkt = parse(frame, ts, wirelen)
            except MalformedPacketError as exc:
                malformed[exc.reason] += 1
                continue
            inspected: Packet | None = pkt
            while inspected is not None:  # the packet, then what a tunnel in it carries
                pkt, inspected = inspected, inspected.inner
                ethertype = pkt.ethertype
                if ethertype == ETH_ARP:
                    kind, name = "arp", "ARP"
                elif ethertype != ETH_IPV4 and ethertype != ETH_IPV6:  # counted, not inspected
                    packets["other"] += 1
                    nbytes["other"] += pkt.length
                    continue
                else:
                    proto = pkt.proto
                    name = PROTO_NAMES.get(proto, "other-ip")
                    kind = "fragment" if pkt.fragment else KINDS.get(proto, "ip")
                    if kind == "tcp":
                        flags = pkt.tcp_flags
                        if flags & SYN or not flags & ACK:
                            kind = "tcp_syn"
                        elif flags & 0x3F == ACK and pkt.payload_offset >= len(pkt.frame):
                            kind = "tcp_ack"
                        elif pkt.dport == 53 or pkt.sport == 53:
                            kind = "tcp_dns"  # DNS over TCP: the one TCP payload a detector reads
                    elif kind == "udp":
                        pkt.reply = answer(pkt.src, pkt.sport, pkt.dst, pkt.dport, ts)
                packets[name] += 1
                nbytes[name] += pkt.length
                for detector in by_kind[kind]:
                    try:
                        detector.observe(pkt, emit)
                    except (IndexError, ValueError, KeyError) as exc:
                        # A detector must never take the monitor down on a strange packet.
                        malformed[f"{detector.name}_{type(exc).__name__}"] += 1
        if ts:
            self._advance(ts)
        self._account(time.perf_counter() - started)

    def _advance(self, ts: float) -> None:
        """Traffic time moved on to `ts`: note it, and expire old state every few seconds."""
        stats = self.stats
        if not stats.first_ts:
            stats.first_ts = ts
        stats.last_ts = ts
        if ts >= self._next_expiry:
            for detector in self.detectors:
                detector.expire(ts)
            self._next_expiry = ts + EXPIRE_EVERY_SECONDS

    def _account(self, elapsed: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.batch_seconds += elapsed
        for i, bound in enumerate(BATCH_BUCKETS):
            if elapsed <= bound:
                stats.batch_buckets[i] += 1
                break
