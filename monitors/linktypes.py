"""Capture link types: every frame becomes an Ethernet frame before it is parsed.

Captures come from Ethernet ports, but also from loopback (NULL/LOOP), tunnels that carry
bare IP (the telework WireGuard and OpenVPN interfaces: LINKTYPE_RAW and its aliases),
`tcpdump -i any` (Linux cooked capture, SLL and SLL2), PPP and Cisco HDLC links. Rather than
teach the parser and every detector each header, the capture layer puts a 14-byte Ethernet
header in front of the network-layer packet: the link's source MAC where the link header has
one (SLL, SLL2), zeros otherwise, and the EtherType that the link header names. The parser's
fast path and the detectors stay as they are, and an attack gives the same alerts whatever
link it was captured on (tests/monitors/test_link_types.py). A frame whose protocol is not a
network-layer one gets EtherType 0 and is counted as "other"; a frame shorter than its own
link header becomes an empty frame, counted as malformed.

Numbers are the pcap LINKTYPE values (https://www.tcpdump.org/linktypes.html).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

ETHERNET = 1
NULL = 0  # BSD loopback: a 4-byte address family in the capturing host's byte order
LOOP = 108  # OpenBSD loopback: the same in network byte order
RAW = 101  # bare IPv4 or IPv6
RAW_ALIASES = (12, 14)  # DLT_RAW as OpenBSD and BSD/OS numbered it
IPV4 = 228
IPV6 = 229
LINUX_SLL = 113
LINUX_SLL2 = 276
PPP = 9
PPP_HDLC = 50
C_HDLC = 104

NAMES = {
    ETHERNET: "Ethernet",
    NULL: "BSD loopback",
    LOOP: "OpenBSD loopback",
    RAW: "raw IP",
    12: "raw IP",
    14: "raw IP",
    IPV4: "raw IPv4",
    IPV6: "raw IPv6",
    LINUX_SLL: "Linux cooked capture (SLL)",
    LINUX_SLL2: "Linux cooked capture v2 (SLL2)",
    PPP: "PPP",
    PPP_HDLC: "PPP in HDLC framing",
    C_HDLC: "Cisco HDLC",
}

ETH_IPV4, ETH_IPV6 = b"\x08\x00", b"\x86\xdd"
_NO_MACS = bytes(12)
_NO_DST = bytes(6)
# Address families that mean IPv6 on the systems that write loopback captures.
_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))  # Linux, NetBSD/OpenBSD, FreeBSD, macOS
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057

Converter = Callable[[bytes], bytes]


def _ip_version(packet: bytes) -> bytes:
    version = packet[0] >> 4 if packet else 0
    return ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else b"\x00\x00"


def _raw(frame: bytes) -> bytes:
    return _NO_MACS + _ip_version(frame) + frame


def _raw4(frame: bytes) -> bytes:
    return _NO_MACS + ETH_IPV4 + frame


def _raw6(frame: bytes) -> bytes:
    return _NO_MACS + ETH_IPV6 + frame


def _loopback(frame: bytes) -> bytes:
    if len(frame) < 4:
        return b""
    families = {struct.unpack_from("<I", frame)[0], struct.unpack_from(">I", frame)[0]}
    if _AF_INET in families:
        kind = ETH_IPV4
    elif families & _AF_INET6:
        kind = ETH_IPV6
    else:
        kind = b"\x00\x00"
    return _NO_MACS + kind + frame[4:]


def _sll(frame: bytes) -> bytes:
    """packet type(2) ARPHRD(2) address length(2) address(8) protocol(2)."""
    if len(frame) < 16:
        return b""
    halen = struct.unpack_from("!H", frame, 4)[0]
    source = frame[6:12] if halen == 6 else _NO_DST
    return _NO_DST + source + frame[14:16] + frame[16:]


def _sll2(frame: bytes) -> bytes:
    """protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) address length(1) address(8)."""
    if len(frame) < 20:
        return b""
    source = frame[12:18] if frame[11] == 6 else _NO_DST
    return _NO_DST + source + frame[0:2] + frame[20:]


def _ppp(frame: bytes) -> bytes:
    """An optional FF 03 (address, control), then a one- or two-byte protocol (RFC 1661)."""
    offset = 2 if frame[:2] == b"\xff\x03" else 0
    if len(frame) < offset + 1:
        return b""
    if frame[offset] & 1:  # protocol field compression: a one-byte protocol
        protocol, offset = frame[offset], offset + 1
    elif len(frame) >= offset + 2:
        protocol, offset = struct.unpack_from("!H", frame, offset)[0], offset + 2
    else:
        return b""
    kind = {_PPP_IPV4: ETH_IPV4, _PPP_IPV6: ETH_IPV6}.get(protocol, b"\x00\x00")
    return _NO_MACS + kind + frame[offset:]


def _c_hdlc(frame: bytes) -> bytes:
    """address(1) control(1) EtherType(2)."""
    if len(frame) < 4:
        return b""
    return _NO_MACS + frame[2:4] + frame[4:]


_CONVERTERS: dict[int, Converter] = {
    NULL: _loopback,
    LOOP: _loopback,
    RAW: _raw,
    12: _raw,
    14: _raw,
    IPV4: _raw4,
    IPV6: _raw6,
    LINUX_SLL: _sll,
    LINUX_SLL2: _sll2,
    PPP: _ppp,
    PPP_HDLC: _ppp,
    C_HDLC: _c_hdlc,
}
SUPPORTED = frozenset((ETHERNET, *_CONVERTERS))


class UnsupportedLinkTypeError(ValueError):
    """A link type the monitors cannot read; the message names the ones they can."""


def converter(linktype: int) -> Converter | None:
    """The function making an Ethernet frame of a frame of this link type; None for Ethernet,
    whose frames need nothing. The capture layer moves the wire length by as many bytes as
    the header grew or shrank, so the volume detectors count what Ethernet would carry."""
    if linktype == ETHERNET:
        return None
    if linktype not in _CONVERTERS:
        known = ", ".join(f"{n} ({NAMES[n]})" for n in sorted(SUPPORTED))
        raise UnsupportedLinkTypeError(f"link type {linktype} is not supported; supported: {known}")
    return _CONVERTERS[linktype]
