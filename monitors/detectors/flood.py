"""Inbound floods against one of the municipality's hosts: UDP reflection and amplification,
fragment floods, SYN-ACK reflection, ICMP floods, and any other volumetric flood.

Reasoning: a denial-of-service flood is many packets to one victim in a short time, from
sources that the victim never talked to. Per destination in the home networks we count, in
windows of `window_seconds` (half a second: an alert comes within a second of the start,
and a burst of a few tens of milliseconds at the rates floods reach, 10k-400k packets/s,
fills a window by itself), the packets and bytes of each kind:

- **UDP reflection**: datagrams from the source ports of the services that amplify (DNS 53,
  NTP 123, SNMP 161, CLDAP 389, SSDP 1900, WS-Discovery 3702, memcached 11211, BACnet 47808,
  ...) that do not answer a flow the victim opened (the engine's conversation table: a
  resolver's own upstream answers are not a flood). The alert names the protocol.
- **fragment flood**: non-first IP fragments (they carry no ports; DNS amplification of large
  answers arrives mostly as fragments).
- **SYN-ACK reflection**: SYN-ACKs to a host that sent few SYNs (spoofed SYNs to third parties
  make those answer the victim).
- **ICMP flood**: ICMP and ICMPv6 of any type, except the echo replies that answer the echo
  requests their destination itself sent (a host pinged by a flood answers it: the flood is
  against the host being pinged, not against the pinger; replies nobody asked for, smurf-style,
  still count).
- **volumetric**: all of the above together, and UDP from any port, when no single kind
  has alerted; with a higher floor (`volumetric_min_pps`, `volumetric_min_mbps`), since a busy
  server's real clients send it UDP too.

A kind alerts when its rate reaches an absolute floor (`min_pps` packets/s or `min_mbps`
Mbit/s) and `baseline_factor` times the victim's learned rate for that kind (an exponential
average of past windows without an alert): a server that receives much UDP every day raises
its own bar. Memory per victim is fixed, whatever the number of sources: the sources are
counted with a 64-byte HyperLogLog (`distinct_sources` in the evidence, about 13 % error).
One alert per victim and kind (the sink suppresses repeats); its evidence has the rate of
the window that fired and the peak so far.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.alerts import Alert
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ACK, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, SYN, Packet
from monitors.state import ANSWER_FLOW, Distinct

# Source ports of UDP services that answer a small request with a large one (US-CERT TA14-017A
# and later reports), with the protocol's name for the alert.
AMPLIFIERS = {
    17: "QOTD",
    19: "CharGEN",
    53: "DNS",
    69: "TFTP",
    111: "Portmap",
    123: "NTP",
    137: "NetBIOS",
    161: "SNMP",
    389: "CLDAP",
    427: "SLP",
    443: "QUIC",
    500: "ISAKMP",
    520: "RIP",
    1900: "SSDP",
    3283: "ARD",
    3702: "WS-Discovery",
    5353: "mDNS",
    5683: "CoAP",
    10001: "Ubiquiti discovery",
    11211: "memcached",
    37810: "DVR discovery",
    47808: "BACnet",
}
KINDS = ("reflection", "fragment", "synack", "icmp", "volumetric")
SIDS = {"reflection": 9100071, "fragment": 9100072, "synack": 9100073, "icmp": 9100074}
SIDS["volumetric"] = 9100075
WHAT = {
    "reflection": "UDP reflection/amplification flood",
    "fragment": "IP fragment flood",
    "synack": "SYN-ACK reflection flood",
    "icmp": "ICMP flood",
    "volumetric": "volumetric flood",
}
_INDEX = {kind: i for i, kind in enumerate(KINDS)}
# (echo request, echo reply) types of ICMP and ICMPv6.
ECHO = {PROTO_ICMP: (8, 0), PROTO_ICMPV6: (128, 129)}


@dataclass
class FloodConfig(DetectorConfig):
    window_seconds: float = 0.5
    min_pps: float = 2000.0  # packets per second of one kind to one victim
    min_mbps: float = 50.0  # or megabits per second
    # Any UDP counts towards "volumetric", including a busy server's real clients (a syslog
    # collector, a media server with 40 calls takes 2,000 packets/s): a higher bar.
    volumetric_min_pps: float = 20000.0
    volumetric_min_mbps: float = 200.0
    baseline_factor: float = 5.0  # and this many times the victim's usual rate of that kind
    baseline_weight: float = 0.05  # share of a quiet window in the learned rate
    synack_max_syn_ratio: float = 0.1  # SYN-ACKs reflected: the victim sent at most this many SYNs
    max_tracked: int = 20_000


class _Victim:
    __slots__ = (
        "alerted",
        "baseline",
        "bytes",
        "packets",
        "peak",
        "pings",
        "port",
        "sources",
        "start",
        "syns",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.packets = [0] * len(KINDS)
        self.bytes = [0] * len(KINDS)
        self.baseline = [0.0] * len(KINDS)  # packets per second, learned
        self.peak = [0.0] * len(KINDS)
        self.alerted = 0  # bit per kind, this window
        self.syns = 0  # SYNs the victim itself sent, this window
        self.pings = 0  # echo requests it sent this window and no reply has answered yet
        self.port = 0  # the amplifier's port seen last
        self.sources = Distinct()


class FloodDetector(Detector):
    name = "flood"
    config_class = FloodConfig
    wants = frozenset({"udp", "icmp", "tcp_syn", "fragment"})
    config: FloodConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        proto = pkt.proto
        if proto == PROTO_TCP and pkt.tcp_flags & (SYN | ACK) == SYN:
            victim = self.table.get(pkt.src)  # a SYN the victim sent: not reflection
            if victim is not None:
                victim.syns += 1
            return
        if proto in (PROTO_ICMP, PROTO_ICMPV6) and self._echo(pkt, proto):
            return
        kind = self._kind(pkt, proto)
        if kind is None or pkt.dst not in self.home:
            return
        state = self.table.get_or_create(pkt.dst, lambda: _Victim(pkt.ts))
        if pkt.ts - state.start >= self.config.window_seconds:
            self._roll(state, pkt.ts)
        i = _INDEX[kind]
        state.packets[i] += 1
        state.bytes[i] += pkt.length
        volumetric = _INDEX["volumetric"]
        if kind != "volumetric":
            state.packets[volumetric] += 1
            state.bytes[volumetric] += pkt.length
        state.sources.add(int.from_bytes(pkt.src, "big"))
        if kind == "reflection":
            state.port = pkt.sport
        self._check(state, i, pkt, emit)
        if kind != "volumetric":
            self._check(state, volumetric, pkt, emit)

    def _echo(self, pkt: Packet, proto: int) -> bool:
        """Remember a home host's echo requests; True for an echo reply that answers one."""
        request, reply = ECHO[proto]
        if pkt.sport == request and pkt.src in self.home:
            pinger = self.table.get_or_create(pkt.src, lambda: _Victim(pkt.ts))
            if pkt.ts - pinger.start >= self.config.window_seconds:
                self._roll(pinger, pkt.ts)
            pinger.pings += 1
        elif pkt.sport == reply:
            pinger = self.table.get(pkt.dst)
            if pinger is not None and pinger.pings > 0:
                pinger.pings -= 1
                return True
        return False

    @staticmethod
    def _kind(pkt: Packet, proto: int) -> str | None:
        if pkt.fragment:
            return "fragment"
        if proto == PROTO_UDP:
            # from an amplifier, and not an answer to what the victim itself asked
            if pkt.sport in AMPLIFIERS and pkt.reply != ANSWER_FLOW:
                return "reflection"
            return "volumetric"
        if proto in (PROTO_ICMP, PROTO_ICMPV6):
            return "icmp"
        if proto == PROTO_TCP and pkt.tcp_flags & (SYN | ACK) == SYN | ACK:
            return "synack"
        return None

    def _check(self, state: _Victim, i: int, pkt: Packet, emit: Emit) -> None:
        if state.alerted & (1 << i):
            return
        cfg = self.config
        window = cfg.window_seconds
        packets = state.packets[i]
        kind = KINDS[i]
        pps, mbps = (
            (cfg.volumetric_min_pps, cfg.volumetric_min_mbps)
            if kind == "volumetric"
            else (cfg.min_pps, cfg.min_mbps)
        )
        if packets < pps * window and state.bytes[i] * 8 < mbps * 1e6 * window:
            return
        if packets < cfg.baseline_factor * state.baseline[i] * window:
            return
        if kind == "synack" and state.syns > cfg.synack_max_syn_ratio * packets:
            return
        if kind == "volumetric" and any(state.alerted & (1 << j) for j in range(i)):
            return  # already named by its kind
        state.alerted |= 1 << i
        elapsed = max(pkt.ts - state.start, 1e-3)
        rate = packets / max(elapsed, window / 10)
        state.peak[i] = max(state.peak[i], rate)
        emit(self._alert(state, kind, pkt, rate, state.bytes[i] * 8 / max(elapsed, window / 10)))

    def _roll(self, state: _Victim, now: float) -> None:
        """Close the window: learn from it unless it alerted, and start the next one."""
        cfg = self.config
        window = max(now - state.start, cfg.window_seconds)
        weight = cfg.baseline_weight
        for i in range(len(KINDS)):
            rate = state.packets[i] / window
            state.peak[i] = max(state.peak[i], rate)
            if not state.alerted & (1 << i):
                state.baseline[i] += weight * (rate - state.baseline[i])
            state.packets[i] = state.bytes[i] = 0
        state.alerted = 0
        state.syns = state.pings = 0
        state.start = now

    def _alert(self, state: _Victim, kind: str, pkt: Packet, pps: float, bps: float) -> Alert:
        i = _INDEX[kind]
        what = WHAT[kind]
        evidence: dict[str, object] = {
            "flood_type": kind,
            "packets_per_second": round(pps),
            "megabits_per_second": round(bps / 1e6, 1),
            "peak_packets_per_second": round(max(state.peak[i], pps)),
            "baseline_packets_per_second": round(state.baseline[i], 1),
            "distinct_sources": state.sources.count(),
            "window_seconds": self.config.window_seconds,
        }
        if kind == "reflection":
            protocol = AMPLIFIERS[state.port]
            what = f"{protocol} {what}"
            evidence |= {"reflector_port": state.port, "reflected_protocol": protocol}
        return self.flow_alert(
            pkt,
            SIDS[kind],
            f"KASTRO DOS {what}",
            "Attempted Denial of Service",
            1,
            evidence,
            dedup=(b"", pkt.dst + kind.encode()),
        )

    def expire(self, now: float) -> None:
        self.table.expire(lambda s: now - s.start > 60.0)
