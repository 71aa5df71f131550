"""OS fingerprinting probes (`nmap -O`, `nmap -A`), even against one or two ports.

Reasoning: to guess the operating system, nmap sends a fixed set of odd packets to one open
and one closed port (Fyodor, "Nmap Network Scanning", ch. 8): six SYNs whose TCP timestamp is
0xFFFFFFFF, an ECN SYN, a segment without flags, SYN|FIN|PSH|URG, FIN|PSH|URG, an ACK, a UDP
datagram of 300 'C' bytes to a closed port, and ICMP echo requests with a non-zero code. A
real stack sends none of these, except the ECN SYN (RFC 3168, Linux with tcp_ecn=1), so the
detector counts the *kinds* of probes one source sends one host within `window_seconds` and
alerts at `min_probe_kinds` kinds. A port scan alone never reaches it; nmap -O sends seven
kinds within a second or two. Service detection alone (`-sV` without `-O`) sends ordinary
connections and is left to the port scan detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.alerts import Alert
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ACK, FIN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PSH, RST, SYN, URG, Packet

ECE, CWR = 0x40, 0x80
ICMP_ECHO_REQUEST = 8
U1_PAYLOAD = b"C" * 300
TS_MAX = b"\x08\x0a\xff\xff\xff\xff"  # TCP timestamp option, TSval 0xFFFFFFFF
PROBES = ("timestamp", "ecn", "null", "synfin", "fin_psh_urg", "udp_c300", "icmp_code")


@dataclass
class FingerprintConfig(DetectorConfig):
    window_seconds: float = 10.0
    min_probe_kinds: int = 3
    max_tracked: int = 20_000


class _Pair:
    __slots__ = ("kinds", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.kinds = 0  # bit per kind of PROBES


class FingerprintDetector(Detector):
    name = "fingerprint"
    config_class = FingerprintConfig
    wants = frozenset({"tcp_syn", "udp", "icmp"})
    config: FingerprintConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        kind = _probe(pkt)
        if kind is None:
            return
        state = self.table.get_or_create(pkt.src + pkt.dst, lambda: _Pair(pkt.ts))
        if pkt.ts - state.start > self.config.window_seconds:
            state.__init__(pkt.ts)
        state.kinds |= 1 << PROBES.index(kind)
        if state.kinds.bit_count() >= self.config.min_probe_kinds:
            emit(self._alert(pkt, state))

    def _alert(self, pkt: Packet, state: _Pair) -> Alert:
        return self.flow_alert(
            pkt,
            9100007,
            "KASTRO SCAN OS fingerprinting (nmap -O/-A probes)",
            "Attempted Information Leak",
            2,
            {
                "probe_kinds": [k for i, k in enumerate(PROBES) if state.kinds >> i & 1],
                "window_seconds": self.config.window_seconds,
            },
            dedup=(pkt.src, pkt.dst),
        )

    def expire(self, now: float) -> None:
        window = self.config.window_seconds
        self.table.expire(lambda s: now - s.start > 2 * window)


def _probe(pkt: Packet) -> str | None:
    """The kind of fingerprinting probe this packet is, if it is one."""
    proto = pkt.proto
    if proto == PROTO_TCP:
        return _tcp_probe(pkt)
    if proto == PROTO_UDP:
        payload = len(pkt.frame) - pkt.payload_offset
        return "udp_c300" if payload == 300 and pkt.payload == U1_PAYLOAD else None
    if proto == PROTO_ICMP and pkt.sport == ICMP_ECHO_REQUEST and pkt.dport != 0:
        return "icmp_code"
    return None


def nmap_timestamp(pkt: Packet) -> bool:
    """Whether the TCP options (the 40 bytes before the payload at most) hold TSval
    0xFFFFFFFF, which nmap's OS probes carry and real stacks practically never send."""
    return pkt.frame.find(TS_MAX, max(0, pkt.payload_offset - 40), pkt.payload_offset) >= 0


def _tcp_probe(pkt: Packet) -> str | None:
    flags = pkt.tcp_flags
    basic = flags & (FIN | SYN | RST | PSH | ACK | URG)
    if basic == 0:
        return "null"
    if flags & (SYN | FIN) == SYN | FIN:
        return "synfin"
    if basic == FIN | PSH | URG:
        return "fin_psh_urg"
    if basic == SYN:
        if nmap_timestamp(pkt):
            return "timestamp"
        if flags & (ECE | CWR) == ECE | CWR:
            return "ecn"
    return None
