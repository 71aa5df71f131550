"""Frames in batches, and the header fields of a whole batch read at once with numpy.

Most packets on a municipal network are the middle of established TCP connections: data
segments and their ACKs. Of the detectors, only a few look at them, and those only at a
few (the volume detector at traffic leaving the municipality, the SYN-flood detector at the
first ACK of a handshake it is watching). Parsing each one into a :class:`Packet` and
handing it to a detector that returns at once was most of the monitor's cost.

So the engine reads a batch of frames (a pcap chunk or a TPACKET_V3 ring block, one buffer
and the frames' offsets in it) and this module reads the fields of every frame in one pass
of numpy array operations: Ethernet type (one VLAN tag allowed), the IPv4 header, TCP ports
and flags. Frames that are plain IPv4 TCP segments past the handshake ("fast rows") are
counted from the arrays; a detector that watches them gives a mask of the rows it may act on
(:meth:`monitors.detectors.base.Detector.batch_mask`), and only those rows become Packets.
Every other frame (UDP, ICMP, SYNs, IPv6, ARP, tunnels, anything odd) takes the ordinary
per-packet path, in order. The rule that keeps this exact: a mask may keep rows its detector
will ignore, never drop one it would act on. tests/monitors/test_batch.py runs every capture
both ways and compares the alerts and counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]

_VLAN = (0x8100, 0x88A8, 0x9100)
VXLAN_PORT, TEREDO_PORT = 4789, 3544

# Kinds of fast rows (the engine's names for them)
KIND_TCP, KIND_ACK = "tcp", "tcp_ack"
TCP_KINDS = ("tcp_syn", KIND_ACK, "tcp_dns", KIND_TCP)


@dataclass(slots=True)
class FrameBatch:
    """Frames cut out of one buffer: frame i is ``data[offsets[i]:offsets[i] + caplens[i]]``,
    with its length on the wire and its capture time. The columns are numpy arrays."""

    data: bytes
    offsets: Ints
    caplens: Ints
    wirelens: Ints
    timestamps: npt.NDArray[np.float64]

    @classmethod
    def from_frames(cls, frames: Iterable[tuple[float, bytes, int]]) -> FrameBatch:
        rows = list(frames)
        caplens = np.fromiter((len(frame) for _, frame, _ in rows), np.int64, len(rows))
        offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(caplens[:-1], out=offsets[1:])
        return cls(
            b"".join(frame for _, frame, _ in rows),
            offsets,
            caplens,
            np.fromiter((wirelen for _, _, wirelen in rows), np.int64, len(rows)),
            np.fromiter((ts for ts, _, _ in rows), np.float64, len(rows)),
        )

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[tuple[float, bytes, int]]:
        data = self.data
        for start, caplen, wirelen, ts in zip(
            self.offsets.tolist(),
            self.caplens.tolist(),
            self.wirelens.tolist(),
            self.timestamps.tolist(),
            strict=True,
        ):
            yield ts, data[start : start + caplen], wirelen

    @property
    def last_timestamp(self) -> float:
        return float(self.timestamps[-1]) if len(self.timestamps) else 0.0


class Columns:
    """The header fields of every frame of a batch, as arrays (one entry per frame).

    ``fast`` marks plain IPv4 TCP segments past the handshake (no SYN, not DNS); ``kind`` is
    their engine kind, ``tcp_ack`` for a bare ACK, ``tcp`` otherwise. Addresses are IPv4 as
    integers. Fields of rows that are not IPv4 TCP hold whatever the bytes there were.
    ``unsure`` marks frames the arrays cannot see into (IP options, tunnels, several VLAN
    tags, short TCP headers): something inside may matter to a detector's mask.
    """

    __slots__ = (
        "ack",
        "dport",
        "dst",
        "fast",
        "flags",
        "ipv4_tcp",
        "l3",
        "payload_offset",
        "sport",
        "src",
        "tcp_kind",
        "unsure",
    )
    ack: Bools
    fast: Bools
    ipv4_tcp: Bools
    unsure: Bools
    dport: Ints
    dst: Ints
    flags: Ints
    l3: Ints
    payload_offset: Ints
    sport: Ints
    src: Ints
    tcp_kind: Ints

    def __init__(self, batch: FrameBatch) -> None:
        read = _Reader(batch)
        caplen = batch.caplens
        ethertype = read.short(12)
        tagged = np.isin(ethertype, _VLAN)
        self.l3 = l3 = np.where(tagged, 18, 14)
        ethertype = np.where(tagged, read.short(16), ethertype)
        ipv4 = (ethertype == 0x0800) & (read.byte(l3) == 0x45)
        fragment = (read.short(l3 + 6) & 0x1FFF) != 0
        proto = read.byte(l3 + 9)
        l4 = l3 + 20
        # The per-packet parser checks the total length only on its slow path (tagged frames).
        length_ok = ~tagged | (read.short(l3 + 2) >= 20)
        data_offset = read.byte(l4 + 12) >> 4
        self.ipv4_tcp = ipv4_tcp = (
            ipv4 & ~fragment & (proto == 6) & length_ok & (caplen >= l4 + 20) & (data_offset >= 5)
        )
        self.flags = flags = read.byte(l4 + 13)
        self.sport, self.dport = sport, dport = read.short(l4), read.short(l4 + 2)
        self.payload_offset = l4 + data_offset * 4
        self.src, self.dst = read.word(l3 + 12), read.word(l3 + 16)
        handshake = ((flags & 0x02) != 0) | ((flags & 0x10) == 0)
        dns = (sport == 53) | (dport == 53)
        # As the engine names TCP packets: bare ACKs first (DNS ones too), then DNS.
        self.ack = (
            ipv4_tcp & ~handshake & ((flags & 0x3F) == 0x10) & (self.payload_offset >= caplen)
        )
        self.fast = self.ack | (ipv4_tcp & ~handshake & ~dns)
        # The engine's kind of every IPv4 TCP row, as an index into TCP_KINDS
        self.tcp_kind = np.where(handshake, 0, np.where(self.ack, 1, np.where(dns, 2, 3)))
        self.unsure = ~(ipv4_tcp | _plainly_seen(read, caplen, ethertype, l3, proto, fragment))

    def kind_rows(self, kind: str) -> Bools:
        return self.ack if kind == KIND_ACK else self.fast & ~self.ack


def _plainly_seen(
    read: _Reader, caplen: Ints, ethertype: Ints, l3: Ints, proto: Ints, fragment: Bools
) -> Bools:
    """Frames the arrays see completely: nothing that parses as IPv4 TCP can be inside.

    ARP and other non-IP frames; IPv4 without options that is a later fragment, ICMP, or UDP
    not to a tunnel port; IPv6 whose first header is TCP, ICMPv6 or such UDP. Each only when
    the frame really holds the bytes read (past its end the arrays read the next frame's).
    """
    seen = ~np.isin(ethertype, (0x0800, 0x86DD, *_VLAN)) & (caplen >= l3)
    ipv4 = (ethertype == 0x0800) & (read.byte(l3) == 0x45) & (caplen >= l3 + 20)
    udp4 = (proto == 17) & (caplen >= l3 + 24) & ~read.tunnel(l3 + 20)
    seen |= ipv4 & (fragment | (proto == 1) | udp4)
    ipv6 = (ethertype == 0x86DD) & (caplen >= l3 + 40)
    next_header = read.byte(l3 + 6)
    udp6 = (next_header == 17) & (caplen >= l3 + 44) & ~read.tunnel(l3 + 40)
    seen |= ipv6 & ((next_header == 6) | (next_header == 58) | udp6)
    return seen


class _Reader:
    """Big-endian fields at the same offset from every frame's start, as int64 arrays."""

    def __init__(self, batch: FrameBatch) -> None:
        self.raw = np.frombuffer(batch.data or b"\0", dtype=np.uint8)  # all frames empty: a zero
        self.starts = batch.offsets

    def byte(self, at: Ints | int) -> Ints:
        # Past the buffer's end (the last frame, when short) the last byte is read instead.
        return self.raw.take(self.starts + at, mode="clip").astype(np.int64)

    def short(self, at: Ints | int) -> Ints:
        return self.byte(at) << 8 | self.byte(at + 1)

    def word(self, at: Ints | int) -> Ints:
        return self.short(at) << 16 | self.short(at + 2)

    def tunnel(self, ports_at: Ints | int) -> Bools:
        """UDP to or from a port the per-packet parser opens as a tunnel."""
        sport, dport = self.short(ports_at), self.short(ports_at + 2)
        tunnel: Bools = (dport == VXLAN_PORT) | (dport == TEREDO_PORT) | (sport == TEREDO_PORT)
        return tunnel
