"""Bounded state for detectors: every table has a hard cap and evicts the oldest entry.

Under a flood of millions of random spoofed sources the tables stay at their cap (flat
memory) and count evictions; a detector loses old, idle state, never memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedTable(Generic[K, V]):
    """A dict with a size cap; the entry inserted longest ago goes first (O(1))."""

    __slots__ = ("cap", "data", "evictions")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data: dict[K, V] = {}
        self.evictions = 0

    def get_or_create(self, key: K, factory: Callable[[], V]) -> V:
        data = self.data
        value = data.get(key)
        if value is None:
            if len(data) >= self.cap:
                del data[next(iter(data))]
                self.evictions += 1
            value = data[key] = factory()
        return value

    def get(self, key: K) -> V | None:
        return self.data.get(key)

    def pop(self, key: K) -> None:
        self.data.pop(key, None)

    def expire(self, is_stale: Callable[[V], bool]) -> int:
        stale = [k for k, v in self.data.items() if is_stale(v)]
        for k in stale:
            del self.data[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self.data)


SKETCH_BITS = 128


def sketch_add(bitmap: int, item: int) -> int:
    """Add ``item`` (any int, e.g. a hash) to a 128-bit linear-counting sketch."""
    return bitmap | (1 << (item * 0x9E3779B1 >> 7) % SKETCH_BITS)


def sketch_count(bitmap: int) -> int:
    """Estimated number of distinct items in the sketch (Whang et al., linear counting).

    Exact enough for the thresholds used here (tens of items): with 128 bits the standard
    error at 30 items is about 4 %; small counts come out exact after rounding (3 items
    estimate 3.04). A full sketch saturates at its capacity, about 620 items. The estimate
    depends only on how many bits are set: looked up, not computed, per packet.
    """
    return _ESTIMATES[bitmap.bit_count()]


def _estimate(ones: int) -> int:
    zeros = SKETCH_BITS - ones
    if zeros == 0:
        return round(SKETCH_BITS * math.log(SKETCH_BITS))
    return round(-SKETCH_BITS * math.log(zeros / SKETCH_BITS))


_ESTIMATES = tuple(_estimate(ones) for ones in range(SKETCH_BITS + 1))


# Ports of services that answer from a fixed port: DNS, NTP, SNMP, LDAP, IKE, SSDP and the like
# (all below 1024), and the usual high ones: OpenVPN, RADIUS, STUN/TURN, SIP, IPsec NAT-T,
# WireGuard, mDNS, WS-Discovery, memcached, BACnet, QUIC on 443 is below 1024 already.
SERVICE_PORTS = frozenset(range(1, 1024)) | frozenset(
    (1194, 1812, 1813, 1900, 3478, 3702, 4500, 5060, 5061, 5349, 5353, 11211, 47808, 51820)
)
EPHEMERAL_FROM = 1024
ANSWER_PORT, ANSWER_FLOW = 1, 2


class Conversations:
    """Which UDP flows were opened, so the other side's answers count as answers.

    A busy resolver answers from port 53 to a different client port each time; a STUN or RTP
    peer answers from a fixed port; none of that is a scan. A packet is an answer when its
    reverse (dst:dport -> src:sport) was seen within `timeout` seconds, or when it comes from a
    service port to an ephemeral one (>= 1024), which holds even when the opening was
    evicted. A scanner that sends from port 53 (`nmap -g 53`) to the usual low ports is still a
    scanner: its destination ports are not ephemeral. Fixed memory: at most `cap` flows (about
    100 bytes each), the oldest first out.
    """

    __slots__ = ("cap", "evictions", "seen", "timeout")

    def __init__(self, cap: int = 65_536, timeout: float = 120.0) -> None:
        self.cap = cap
        self.timeout = timeout
        self.seen: dict[int, float] = {}
        self.evictions = 0

    def answer(self, src: bytes, sport: int, dst: bytes, dport: int, ts: float) -> int:
        """ANSWER_FLOW if this packet answers a flow its destination opened, ANSWER_PORT if
        it only looks like an answer (service port to ephemeral port), else 0, and then the
        packet is remembered as an opening."""
        seen = self.seen
        opened = seen.get(hash((dst, dport, src, sport)))
        if opened is not None and ts - opened <= self.timeout:
            return ANSWER_FLOW
        if sport in SERVICE_PORTS and dport >= EPHEMERAL_FROM:
            return ANSWER_PORT
        key = hash((src, sport, dst, dport))
        if key not in seen and len(seen) >= self.cap:
            del seen[next(iter(seen))]
            self.evictions += 1
        seen[key] = ts
        return 0


class Distinct:
    """A HyperLogLog of 64 registers (Flajolet et al., 2007): distinct items in 64 bytes,
    whether there are ten or ten million (standard error about 13 %). For the sources of a
    flood, where the 128-bit linear-counting sketches above saturate at about 620."""

    __slots__ = ("registers",)
    M = 64
    _ALPHA = 0.709  # alpha_64

    def __init__(self) -> None:
        self.registers = bytearray(self.M)

    def add(self, item: int) -> None:
        h = (item * 0x9E3779B97F4A7C15 + 0x7F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
        index, rest = h & 63, h >> 6
        rank = 59 - rest.bit_length() if rest else 59  # leading zeros of the 58 bits, + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    def count(self) -> int:
        registers = self.registers
        estimate = self._ALPHA * self.M * self.M / sum(2.0**-r for r in registers)
        zeros = registers.count(0)
        if estimate <= 2.5 * self.M and zeros:
            return round(self.M * math.log(self.M / zeros))  # small counts: linear counting
        return round(estimate)
