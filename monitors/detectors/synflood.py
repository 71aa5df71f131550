"""SYN floods against a service, including floods from spoofed sources.

Reasoning: in a flood, SYNs to one (host, port) arrive far faster than normal and almost
none of them complete the handshake (the half-open ratio approaches 1), because spoofed
or abusive sources never send the final ACK. We count SYNs per destination service in a
short window and estimate completions with a 1024-bit "pending handshake" bitmap keyed by
the client's source port (see pending_index): the client's first pure ACK that matches a
pending bit counts as a completed handshake. Distinct sources are estimated with a
linear-counting sketch: many distinct sources at a high rate means spoofing (a few real
clients cannot send that).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitors.batch import KIND_ACK, Bools, Columns, Ints
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ACK, FIN, RST, SYN, Packet
from monitors.state import SKETCH_BITS, sketch_add, sketch_count

PENDING_BITS = 1024
# Pending handshakes, for the engine's batches (batch_mask): counted per slot of (IPv4
# service, pending bit) modulo a prime; a slot shared by two pairs only costs a lookup.
WATCH_SLOTS = 1_048_573


def pending_index(sport: Any) -> Any:
    """The pending-handshake bit of a client: bits 5-14 of its port times 0x9E3779B1
    (Fibonacci hashing). Only the port's low 15 bits reach them: each connection of a
    client has its own port, so that is what tells handshakes apart. Ints or arrays."""
    return ((sport & 0x7FFF) * 0x79B1 & 0x7FFF) >> 5


def _pair(address: Any, port: Any, index: Any) -> Any:
    """(IPv4 service, pending bit) as one integer (58 bits)."""
    return (address << 16 | port) << 10 | index


def _slot(address: Any, port: Any, index: Any) -> Any:
    return _pair(address, port, index) % WATCH_SLOTS


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # How many IPv4 (service, pending bit) pairs fall on each slot: never fewer than
        # truly pending (a state reset or evicted leaves its count until the next expire).
        # One memory, two views: per-packet updates through the array (cheap from Python),
        # a batch's lookups through numpy.
        self._counts = array("i", bytes(4 * WATCH_SLOTS))
        self._pending_slots: Ints = np.frombuffer(self._counts, dtype=np.int32)

    def batch_mask(self, kind: str, cols: Columns) -> Bools | None:
        """The bare ACKs that may complete a pending handshake: the only ACKs
        :meth:`observe` acts on. Per (service, pending bit), in the batch's order, an ACK
        counts when a SYN came just before it, or when it comes first and the bit was
        pending before the batch. A batch with frames the arrays cannot see into (tunnels,
        IP options) might hide a SYN: then every ACK is handed over."""
        if kind != KIND_ACK or cols.unsure.any():
            return None
        syn = cols.ipv4_tcp & ((cols.flags & (SYN | ACK | RST | FIN)) == SYN)
        events = np.flatnonzero(syn | cols.ack)
        pairs = _pair(cols.dst[events], cols.dport[events], pending_index(cols.sport[events]))
        order = np.lexsort((events, pairs))  # by pair, then in the batch's order
        pairs, events, is_syn = pairs[order], events[order], syn[events][order]
        first = np.ones(len(pairs), dtype=np.bool_)
        first[1:] = pairs[1:] != pairs[:-1]
        after_syn = np.zeros(len(pairs), dtype=np.bool_)
        after_syn[1:] = is_syn[:-1]
        pending_before = self._pending_slots[pairs % WATCH_SLOTS] > 0
        mask = np.zeros(len(cols.ack), dtype=np.bool_)
        mask[events[~is_syn & np.where(first, pending_before, after_syn)]] = True
        return mask

    def observe(self, pkt: Packet, emit: Emit) -> None:
        flags = pkt.tcp_flags & (SYN | ACK | RST | FIN)
        if flags == SYN:
            key = (pkt.dst, pkt.dport)
            state = self.table.get_or_create(key, lambda: _Target(pkt.ts))
            cfg = self.config
            if pkt.ts - state.start > cfg.window_seconds:
                self._check(state, pkt, emit)
                self._add_pending(key, state.pending, -1)
                state.__init__(pkt.ts)
            state.syns += 1
            index = pending_index(pkt.sport)
            if not state.pending >> index & 1:
                state.pending |= 1 << index
                self._count(pkt, index, 1)
            state.sources = sketch_add(state.sources, int.from_bytes(pkt.src, "big"))
            if not state.alerted and state.syns >= cfg.min_syn_rate * cfg.window_seconds:
                self._check(state, pkt, emit)
        elif flags == ACK:
            state = self.table.get((pkt.dst, pkt.dport))
            if state is not None:
                index = pending_index(pkt.sport)
                if state.pending >> index & 1:
                    state.pending &= ~(1 << index)
                    state.completed += 1
                    self._count(pkt, index, -1)

    def _count(self, pkt: Packet, index: int, change: int) -> None:
        if len(pkt.dst) == 4:
            counts = self._counts
            slot = _slot(int.from_bytes(pkt.dst, "big"), pkt.dport, index)
            counts[slot] = max(0, counts[slot] + change)

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
        self._pending_slots[:] = 0
        for key, state in self.table.data.items():
            self._add_pending(key, state.pending, 1)

    def _add_pending(self, key: tuple[bytes, int], pending: int, change: int) -> None:
        """Count (or uncount) a service's pending bits in the batches' slots."""
        address, port = key
        if len(address) == 4 and pending:
            bits = np.unpackbits(
                np.frombuffer(pending.to_bytes(PENDING_BITS // 8, "little"), np.uint8),
                bitorder="little",
            )
            slots = _slot(int.from_bytes(address, "big"), port, np.flatnonzero(bits))
            np.add.at(self._pending_slots, slots, change)
            self._pending_slots[slots] = np.maximum(self._pending_slots[slots], 0)
