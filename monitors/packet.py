"""Fast L2-L4 parsing of raw Ethernet frames.

scapy needs about 0.3-0.5 ms per packet; this parser needs a few microseconds, because it
reads only the header fields the detectors use, with ``struct`` at fixed offsets. Odd
frames (VLAN tags, IPv6 extension headers, fragments, non-IP) are handled or counted and
skipped; a malformed frame never raises out of :func:`parse`.

Tunnels Suricata decodes by default are opened too: VXLAN (UDP 4789), GRE (IP protocol 47,
carrying Ethernet, IPv4 or IPv6) and Teredo (UDP 3544, IPv6 in UDP). The tunnel packet keeps
its own fields and gets the packet inside as ``inner`` (at most two levels), and the engine
inspects both: a scan hidden in a tunnel is seen as a scan, a flood of tunnel packets as a
flood. An inner packet that does not parse leaves just the outer one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_VLAN = (0x8100, 0x88A8, 0x9100)

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_GRE = 47
PROTO_NAMES = {PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMPV6: "IPv6-ICMP"}

# TCP flags
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# IPv6 extension headers we walk over to find the transport header.
_IPV6_EXT = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH
_IPV6_FRAGMENT = 44

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")
_TCP_FLAGS_OFFSET = 13
_ARP = struct.Struct("!HHBBH6s4s6s4s")


class MalformedPacketError(Exception):
    """A frame too short or inconsistent to parse; ``reason`` labels the metric."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Packet:
    """The fields of one frame that the detectors read. Addresses are raw bytes."""

    ts: float
    length: int  # bytes on the wire
    src_mac: bytes
    dst_mac: bytes
    ethertype: int
    src: bytes = b""  # IPv4 (4 bytes) or IPv6 (16 bytes); ARP: sender protocol address
    dst: bytes = b""
    proto: int = 0  # IP protocol number; 0 for non-IP
    sport: int = 0  # ICMP: type
    dport: int = 0  # ICMP: code
    tcp_flags: int = 0
    payload_offset: int = 0  # where the transport payload starts in ``frame``
    fragment: bool = False  # a non-first fragment: no transport header here
    frame: bytes = b""
    # ARP only
    arp_op: int = 0
    arp_sender_mac: bytes = b""
    arp_target_ip: bytes = b""
    # UDP only, set by the engine: an answer, never a probe (monitors.state.Conversations):
    # 2 to a flow the other side opened, 1 from a service port to an ephemeral one, 0 not
    reply: int = 0
    # The packet a tunnel packet carries (VXLAN, GRE, Teredo), inspected after this one.
    inner: Packet | None = None

    @property
    def protocol_name(self) -> str:
        if self.ethertype == ETH_ARP:
            return "ARP"
        if self.proto:
            return PROTO_NAMES.get(self.proto, "other-ip")
        return "other"

    @property
    def payload(self) -> bytes:
        return self.frame[self.payload_offset :]


def parse(frame: bytes, ts: float, wire_length: int | None = None) -> Packet:
    """Parse one Ethernet frame; a bad one raises :class:`MalformedPacketError`, nothing else."""
    try:
        pkt = _parse(frame, ts, len(frame) if wire_length is None else wire_length)
    except struct.error as exc:
        raise MalformedPacketError("truncated") from exc
    except (IndexError, ValueError) as exc:
        raise MalformedPacketError("inconsistent") from exc
    if _may_carry(pkt):
        _decapsulate(pkt, 1)
    return pkt


def _may_carry(pkt: Packet) -> bool:
    """GRE, or UDP to a tunnel port: the only packets worth a look inside (cheap test)."""
    if pkt.fragment:
        return False
    if pkt.proto == PROTO_UDP:
        return pkt.dport in _TUNNEL_PORTS or pkt.sport == TEREDO_PORT
    return pkt.proto == PROTO_GRE


VXLAN_PORT = 4789
TEREDO_PORT = 3544
_TUNNEL_PORTS = frozenset((VXLAN_PORT, TEREDO_PORT))
_GRE_ETHERNET = 0x6558
_TUNNEL_DEPTH = 2


def _decapsulate(pkt: Packet, depth: int) -> None:
    """Set ``pkt.inner`` when pkt is a tunnel packet whose content parses."""
    frame, start = pkt.frame, pkt.payload_offset
    try:
        inner_frame = _tunnel_content(pkt, frame, start)
        if inner_frame is None:
            return
        inner = _parse(inner_frame, pkt.ts, len(inner_frame))
    except (struct.error, IndexError, ValueError, MalformedPacketError):
        return
    pkt.inner = inner
    if depth < _TUNNEL_DEPTH and _may_carry(inner):
        _decapsulate(inner, depth + 1)


def _tunnel_content(pkt: Packet, frame: bytes, start: int) -> bytes | None:
    """The Ethernet frame inside a tunnel packet (synthetic Ethernet for IP in GRE and
    Teredo), or None when it is not a tunnel."""
    if pkt.proto == PROTO_GRE:
        return _gre(frame, start)
    if pkt.dport == VXLAN_PORT and frame[start] & 0x08:  # the I flag: a VNI follows
        return frame[start + 8 :]
    if pkt.dport == TEREDO_PORT or pkt.sport == TEREDO_PORT:
        return _teredo(frame, start)
    return None


def _gre(frame: bytes, start: int) -> bytes | None:
    flags, version = frame[start], frame[start + 1] & 0x07
    if version != 0:  # 1 is PPTP's enhanced GRE: not decoded
        return None
    (ptype,) = struct.unpack_from("!H", frame, start + 2)
    offset = start + 4 + 4 * (bool(flags & 0x80) or bool(flags & 0x40))
    offset += 4 * bool(flags & 0x20) + 4 * bool(flags & 0x10)  # key, sequence number
    if ptype == _GRE_ETHERNET:
        return frame[offset:]
    if ptype in (ETH_IPV4, ETH_IPV6):
        return frame[0:12] + struct.pack("!H", ptype) + frame[offset:]
    return None


def _teredo(frame: bytes, start: int) -> bytes | None:
    offset = start
    if frame[offset : offset + 2] == b"\x00\x01":  # authentication indicator
        offset += 13 + frame[offset + 2] + frame[offset + 3]
    if frame[offset : offset + 2] == b"\x00\x00":  # origin indication
        offset += 8
    if len(frame) < offset + 40 or frame[offset] >> 4 != 6:
        return None
    return frame[0:12] + struct.pack("!H", ETH_IPV6) + frame[offset:]


_FAST_V4 = struct.Struct("!HBBHHHBBH4s4sHH")  # ethertype, IPv4 header (IHL 5), ports
_TCP, _UDP = PROTO_TCP, PROTO_UDP


def _parse(frame: bytes, ts: float, wire_length: int) -> Packet:
    # Fast path for the common case, untagged IPv4 without options carrying TCP or UDP:
    # one struct call reads the ethertype, the IP header and the ports.
    if len(frame) >= 42 and frame[12:14] == b"\x08\x00" and frame[14] == 0x45:
        (_et, _vihl, _tos, _total, _ident, frag, _ttl, proto, _csum, src, dst, sport, dport) = (
            _FAST_V4.unpack_from(frame, 12)
        )
        if not frag & 0x1FFF and (proto == _UDP or (proto == _TCP and len(frame) >= 54)):
            if proto == _TCP:
                data_offset = (frame[46] >> 4) * 4
                if data_offset < 20:
                    raise MalformedPacketError("bad_tcp_header")
                flags, payload_offset = frame[47], 34 + data_offset
            else:
                flags, payload_offset = 0, 42
            return Packet(
                ts,
                wire_length,
                frame[6:12],
                frame[0:6],
                ETH_IPV4,
                src,
                dst,
                proto,
                sport,
                dport,
                flags,
                payload_offset,
                False,
                frame,
            )
    if len(frame) < 14:
        raise MalformedPacketError("truncated")
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame, 0)
    offset = 14
    vlan_depth = 0
    while ethertype in ETH_VLAN:
        vlan_depth += 1
        if vlan_depth > 2:
            raise MalformedPacketError("vlan_stack")
        (ethertype,) = struct.unpack_from("!H", frame, offset + 2)
        offset += 4
    pkt = Packet(ts, wire_length, src_mac, dst_mac, ethertype, frame=frame)
    if ethertype == ETH_IPV4:
        _ipv4(frame, offset, pkt)
    elif ethertype == ETH_IPV6:
        _ipv6(frame, offset, pkt)
    elif ethertype == ETH_ARP:
        _arp(frame, offset, pkt)
    return pkt


def _ipv4(frame: bytes, offset: int, pkt: Packet) -> None:
    vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(frame, offset)
    if vihl >> 4 != 4:
        raise MalformedPacketError("bad_ip_version")
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or total < ihl:
        raise MalformedPacketError("bad_ip_header")
    pkt.src, pkt.dst, pkt.proto = src, dst, proto
    if frag & 0x1FFF:  # a later fragment carries no transport header
        pkt.fragment = True
        return
    _transport(frame, offset + ihl, pkt)


def _ipv6(frame: bytes, offset: int, pkt: Packet) -> None:
    first, _plen, nxt, _hlim, src, dst = _IPV6.unpack_from(frame, offset)
    if first >> 28 != 6:
        raise MalformedPacketError("bad_ip_version")
    pkt.src, pkt.dst = src, dst
    offset += 40
    for _ in range(8):  # a bounded walk: at most 8 extension headers
        if nxt in _IPV6_EXT:
            nxt_hdr, hdr_len = frame[offset], frame[offset + 1]
            offset += (hdr_len + 2) * 4 if nxt == 51 else (hdr_len + 1) * 8
            nxt = nxt_hdr
        elif nxt == _IPV6_FRAGMENT:
            nxt_hdr = frame[offset]
            (frag,) = struct.unpack_from("!H", frame, offset + 2)
            offset += 8
            nxt = nxt_hdr
            if frag >> 3:
                pkt.proto, pkt.fragment = nxt, True
                return
        else:
            break
    else:
        raise MalformedPacketError("ipv6_header_chain")
    pkt.proto = nxt
    _transport(frame, offset, pkt)


def _transport(frame: bytes, offset: int, pkt: Packet) -> None:
    proto = pkt.proto
    if proto == PROTO_TCP:
        pkt.sport, pkt.dport = _PORTS.unpack_from(frame, offset)
        data_offset = (frame[offset + 12] >> 4) * 4
        if data_offset < 20:
            raise MalformedPacketError("bad_tcp_header")
        pkt.tcp_flags = frame[offset + _TCP_FLAGS_OFFSET]
        pkt.payload_offset = offset + data_offset
    elif proto == PROTO_UDP:
        pkt.sport, pkt.dport = _PORTS.unpack_from(frame, offset)
        pkt.payload_offset = offset + 8
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        pkt.sport, pkt.dport = frame[offset], frame[offset + 1]
        pkt.payload_offset = offset + 4
    else:
        pkt.payload_offset = offset


def _arp(frame: bytes, offset: int, pkt: Packet) -> None:
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(frame, offset)
    if htype != 1 or ptype != ETH_IPV4 or hlen != 6 or plen != 4:
        raise MalformedPacketError("arp_not_ethernet_ipv4")
    pkt.arp_op, pkt.arp_sender_mac, pkt.src, pkt.arp_target_ip = op, sha, spa, tpa
    pkt.dst = tpa
