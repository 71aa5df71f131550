"""SYN floods against a service, including floods from spoofed sources.

Reasoning: in a flood, SYNs to one (host, port) arrive far faster than normal and almost
none of them complete the handshake (the half-open ratio approaches 1), because spoofed
or abusive sources never send the final ACK. We count SYNs per destination service in a
short window and estimate completions with a 1024-bit "pending handshake" bitmap keyed by
the client's (address, port): the client's first pure ACK that matches a pending bit counts
as a completed handshake. Distinct sources are estimated with a linear-counting sketch:
many distinct sources at a high rate means spoofing (a few real clients cannot send that).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ACK, FIN, RST, SYN, Packet
from monitors.state import SKETCH_BITS, sketch_add, sketch_count

PENDING_BITS = 1024


@dataclass
class SynFloodConfig(DetectorConfig):
    window_seconds: float = 2.0
    min_syn_rate: float = 100.0  # SYNs per second to one service
    min_half_open_ratio: float = 0.8
    spoofed_min_sources: int = 50  # distinct sources (estimated) that make it "spoofed"
    max_tracked: int = 20_000


class _Target:
    __slots__ = ("alerted", "completed", "pending", "sources", "start", "syns")

    def __init__(self, start: float) -> None:
        self.start = start
        self.alerted = False
        self.syns = 0
        self.completed = 0
        self.pending = 0
        self.sources = 0


class SynFloodDetector(Detector):
    name = "synflood"
    config_class = SynFloodConfig
    wants = frozenset({"tcp_syn", "tcp_ack"})
    config: SynFloodConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        flags = pkt.tcp_flags & (SYN | ACK | RST | FIN)
        if flags == SYN:
            key = (pkt.dst, pkt.dport)
            state = self.table.get_or_create(key, lambda: _Target(pkt.ts))
            cfg = self.config
            if pkt.ts - state.start > cfg.window_seconds:
                self._check(state, pkt, emit)
                state.__init__(pkt.ts)
            state.syns += 1
            client = int.from_bytes(pkt.src, "big") * 65536 + pkt.sport
            state.pending |= 1 << (client * 0x9E3779B1 >> 5) % PENDING_BITS
            state.sources = sketch_add(state.sources, int.from_bytes(pkt.src, "big"))
            if not state.alerted and state.syns >= cfg.min_syn_rate * cfg.window_seconds:
                self._check(state, pkt, emit)
        elif flags == ACK:
            state = self.table.get((pkt.dst, pkt.dport))
            if state is not None:
                client = int.from_bytes(pkt.src, "big") * 65536 + pkt.sport
                bit = 1 << (client * 0x9E3779B1 >> 5) % PENDING_BITS
                if state.pending & bit:
                    state.pending &= ~bit
                    state.completed += 1

    def _check(self, state: _Target, pkt: Packet, emit: Emit) -> None:
        cfg = self.config
        elapsed = max(pkt.ts - state.start, 1e-3)
        rate = state.syns / elapsed
        half_open = 1.0 - min(state.completed, state.syns) / max(state.syns, 1)
        if (
            state.syns < cfg.min_syn_rate * cfg.window_seconds
            or half_open < cfg.min_half_open_ratio
        ):
            return
        state.alerted = True  # once per window; the sink deduplicates across windows
        sources = sketch_count(state.sources)
        spoofed = sources >= cfg.spoofed_min_sources
        emit(
            self.flow_alert(
                pkt,
                9100006 if spoofed else 9100005,
                "KASTRO DOS SYN flood" + (" from spoofed sources" if spoofed else ""),
                "Attempted Denial of Service",
                1,
                {
                    "syn_rate_per_second": round(rate, 1),
                    "syns": state.syns,
                    "completed_handshakes": state.completed,
                    "half_open_ratio": round(half_open, 3),
                    "distinct_sources_estimate": round(sources),
                    "sources_saturated": state.sources.bit_count() == SKETCH_BITS,
                },
                # One alert per attacked service: spoofed sources are all "the attacker".
                dedup=(b"" if spoofed else pkt.src, pkt.dst + pkt.dport.to_bytes(2, "big")),
            )
        )

    def expire(self, now: float) -> None:
        window = self.config.window_seconds
        self.table.expire(lambda s: now - s.start > 10 * window)
