"""Beaconing: one host contacting one destination at regular intervals (malware check-ins).

Reasoning: implants call their controller on a timer (every 30 s, 5 min...), so the gaps
between their connections are nearly constant, while people and most software connect
irregularly. For each (source, destination, port) we keep the running mean and variance of
the gaps between new connections (Welford's method: O(1) memory) and report a series of at
least ``min_connections`` whose coefficient of variation (std / mean) is small. Internal
destinations (update servers, monitoring) poll regularly on purpose, so only connections
leaving the municipality are watched unless configured otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ACK, PROTO_TCP, PROTO_UDP, SYN, Packet


@dataclass
class BeaconConfig(DetectorConfig):
    min_connections: int = 8  # gaps observed before judging
    max_variation: float = 0.1  # coefficient of variation of the gaps
    min_interval_seconds: float = 5.0
    udp_session_gap_seconds: float = 2.0  # UDP packets closer than this are one "connection"
    watch_internal: bool = False


class _Series:
    __slots__ = ("count", "last", "m2", "mean")

    def __init__(self, ts: float) -> None:
        self.last = ts
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0


class BeaconDetector(Detector):
    name = "beacon"
    config_class = BeaconConfig
    wants = frozenset({"tcp_syn", "udp"})
    config: BeaconConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        cfg = self.config
        if pkt.proto == PROTO_TCP:
            if pkt.tcp_flags & (SYN | ACK) != SYN:
                return
        elif pkt.proto != PROTO_UDP or pkt.dport in (53, 123):
            return
        if not cfg.watch_internal and pkt.dst in self.home:
            return
        key = pkt.src + pkt.dst + pkt.dport.to_bytes(2, "big")
        state = self.table.get(key)
        if state is None:
            self.table.get_or_create(key, lambda: _Series(pkt.ts))
            return
        gap = pkt.ts - state.last
        if pkt.proto == PROTO_UDP and gap < cfg.udp_session_gap_seconds:
            state.last = pkt.ts
            return
        if gap <= 0:
            return
        state.last = pkt.ts
        state.count += 1
        delta = gap - state.mean
        state.mean += delta / state.count
        state.m2 += delta * (gap - state.mean)
        if state.count < cfg.min_connections or state.mean < cfg.min_interval_seconds:
            return
        variation = math.sqrt(state.m2 / (state.count - 1)) / state.mean
        if variation <= cfg.max_variation:
            emit(
                self.flow_alert(
                    pkt,
                    9100061,
                    "KASTRO periodic beaconing to one destination",
                    "Potentially Bad Traffic",
                    2,
                    {
                        "connections": state.count + 1,
                        "mean_interval_seconds": round(state.mean, 2),
                        "interval_variation": round(variation, 4),
                    },
                )
            )

    def expire(self, now: float) -> None:
        self.table.expire(lambda s: now - s.last > 3600)
