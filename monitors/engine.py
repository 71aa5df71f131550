"""The monitor's main loop: frames -> packets -> detectors -> alerts and metrics."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitors.alerts import Alert, AlertSink
from monitors.batch import KIND_ACK, KIND_TCP, TCP_KINDS, Columns, FrameBatch
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


def _tcp_kind(pkt: Packet) -> str:
    flags = pkt.tcp_flags
    if flags & SYN or not flags & ACK:
        return "tcp_syn"
    if flags & 0x3F == ACK and pkt.payload_offset >= len(pkt.frame):
        return KIND_ACK
    if pkt.dport == 53 or pkt.sport == 53:
        return "tcp_dns"  # DNS over TCP: the one TCP payload a detector reads
    return KIND_TCP


class Engine:
    def __init__(self, detectors: list[Detector], sink: AlertSink, columnar: bool = True) -> None:
        self.detectors = detectors
        self.columnar = columnar  # False: every frame parsed one by one (the reference path)
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

    def process_batch(self, frames: FrameBatch | Iterable[tuple[float, bytes, int]]) -> None:
        """Inspect a batch of ``(timestamp, frame, wire length)``, in order."""
        started = time.perf_counter()
        batch = frames if isinstance(frames, FrameBatch) else FrameBatch.from_frames(frames)
        if len(batch):
            if self.columnar:
                self._columnar(batch)
            else:
                for ts, frame, wirelen in batch:
                    self._frame(ts, frame, wirelen)
            if batch.last_timestamp:
                self._advance(batch.last_timestamp)
        self._account(time.perf_counter() - started)

    def _columnar(self, batch: FrameBatch) -> None:
        """The batch with its IPv4 TCP segments read as arrays (monitors.batch): counted
        there, built into packets from the arrays, and plain segments that no detector asks
        for not even that. Every other frame is parsed and inspected as always."""
        cols = Columns(batch)
        tcp = cols.ipv4_tcp
        self.stats.packets["TCP"] += int(tcp.sum())
        self.stats.bytes["TCP"] += int(batch.wirelens[tcp].sum())
        visit = ~cols.fast
        for kind in (KIND_TCP, KIND_ACK):
            visit |= cols.kind_rows(kind) & self._wanted(kind, cols)
        rows = np.flatnonzero(visit)
        data = batch.data
        detectors = [self._by_kind[kind] for kind in TCP_KINDS]
        emit = self._emit
        columns = zip(
            tcp[rows].tolist(),
            batch.offsets[rows].tolist(),
            batch.caplens[rows].tolist(),
            batch.wirelens[rows].tolist(),
            batch.timestamps[rows].tolist(),
            cols.l3[rows].tolist(),
            cols.sport[rows].tolist(),
            cols.dport[rows].tolist(),
            cols.flags[rows].tolist(),
            cols.payload_offset[rows].tolist(),
            cols.tcp_kind[rows].tolist(),
            strict=True,
        )
        for is_tcp, start, caplen, wirelen, ts, l3, sport, dport, flags, payload, kind in columns:
            end = start + caplen
            if not is_tcp:
                self._frame(ts, data[start:end], wirelen)
                continue
            ip = start + l3
            pkt = Packet(
                ts,
                wirelen,
                data[start + 6 : start + 12],
                data[start : start + 6],
                ETH_IPV4,
                data[ip + 12 : ip + 16],
                data[ip + 16 : ip + 20],
                PROTO_TCP,
                sport,
                dport,
                flags,
                payload,
                False,
                data[start:end],
            )
            for detector in detectors[kind]:
                try:
                    detector.observe(pkt, emit)
                except (IndexError, ValueError, KeyError) as exc:
                    self._failed(detector, exc)

    def _wanted(self, kind: str, cols: Columns) -> npt.NDArray[np.bool_]:
        """Rows of `kind` some detector may act on (each detector's mask, or all rows)."""
        wanted = np.zeros(len(cols.fast), dtype=np.bool_)
        for detector in self._by_kind[kind]:
            mask = detector.batch_mask(kind, cols)
            if mask is None:
                return np.ones(len(cols.fast), dtype=np.bool_)
            wanted |= mask
        return wanted

    def _frame(self, ts: float, frame: bytes, wirelen: int) -> None:
        """One frame, parsed: the packet, then what a tunnel in it carries."""
        try:
            inspected: Packet | None = parse(frame, ts, wirelen)
        except MalformedPacketError as exc:
            self.stats.malformed[exc.reason] += 1
            return
        while inspected is not None:
            pkt, inspected = inspected, inspected.inner
            self._inspect(pkt)

    def _inspect(self, pkt: Packet) -> None:
        stats = self.stats
        ethertype = pkt.ethertype
        if ethertype == ETH_ARP:
            kind, name = "arp", "ARP"
        elif ethertype != ETH_IPV4 and ethertype != ETH_IPV6:  # counted, not inspected
            stats.packets["other"] += 1
            stats.bytes["other"] += pkt.length
            return
        else:
            proto = pkt.proto
            name = PROTO_NAMES.get(proto, "other-ip")
            kind = "fragment" if pkt.fragment else KINDS.get(proto, "ip")
            if kind == "tcp":
                kind = _tcp_kind(pkt)
            elif kind == "udp":
                pkt.reply = self.conversations.answer(
                    pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.ts
                )
        stats.packets[name] += 1
        stats.bytes[name] += pkt.length
        emit = self._emit
        for detector in self._by_kind[kind]:
            try:
                detector.observe(pkt, emit)
            except (IndexError, ValueError, KeyError) as exc:
                self._failed(detector, exc)

    def _failed(self, detector: Detector, exc: Exception) -> None:
        # A detector must never take the monitor down on a strange packet: counted instead.
        self.stats.malformed[f"{detector.name}_{type(exc).__name__}"] += 1

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
