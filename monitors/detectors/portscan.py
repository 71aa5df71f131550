"""Port scans: vertical (many ports of one host), horizontal (one port of many hosts),
stealth probes (NULL, FIN, Xmas) and UDP scans.

Reasoning: a scanner touches many distinct (host, port) pairs in a short time and most of
its probes go unanswered or are refused, while a normal client talks to few pairs and its
connections succeed (Jung et al., 2004, "Fast portscan detection using sequential
hypothesis testing": benign first contacts succeed ~80 % of the time, scans ~20 %). We count
distinct targets per source with 128-bit linear-counting sketches (fixed memory per source),
and require a low success ratio (SYN-ACKs returned / SYNs sent) for horizontal scans, where
busy but legitimate clients (browsers, backup agents) could otherwise reach the count.
NULL and Xmas segments never occur in legitimate TCP, so a few of them suffice.

Direction: answers are not probes. The engine marks a UDP packet as an answer when it reverses
a flow the other side opened, or comes from a service port to an ephemeral one
(monitors.state.Conversations), so a busy resolver answering 60 client ports, a STUN server
or a media server is never a "UDP scanner". Those answers also count for whoever opened the
flows: a UDP scan needs its probes mostly unanswered, as Jung's first contacts do for TCP.

Alerts: one per source and kind; for scans of a few hosts (vertical, UDP) one per target host,
so a scanner that moves on to a second host gets an alert naming that host too.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.alerts import Alert
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.detectors.fingerprint import nmap_timestamp
from monitors.packet import ACK, FIN, PROTO_TCP, PROTO_UDP, PSH, RST, SYN, URG, Packet
from monitors.state import sketch_add, sketch_count


@dataclass
class PortScanConfig(DetectorConfig):
    window_seconds: float = 60.0
    vertical_ports: int = 20  # distinct ports on at most `vertical_max_hosts` hosts
    vertical_max_hosts: int = 3
    horizontal_hosts: int = 20  # distinct hosts probed
    horizontal_max_success_ratio: float = 0.5
    stealth_probes: int = 5  # NULL/FIN/Xmas segments
    udp_ports: int = 20
    # A UDP scan goes mostly unanswered (closed ports answer with ICMP, if at all); a client
    # with many real flows to one server (a SIP trunk's media, a game) gets UDP answers.
    udp_max_answered_ratio: float = 0.5


class _Source:
    # Eight small fields per source: the tables must hold millions of spoofed sources in
    # bounded memory (under 256 bytes each with its table entry, measured in the tests).
    __slots__ = ("answered", "hosts", "last", "pairs", "probes", "start", "stealth", "udp")

    def __init__(self, start: float) -> None:
        self.start = start
        self.hosts = 0  # sketch of distinct hosts probed
        self.pairs = 0  # sketch of distinct (host, port) pairs, TCP and UDP
        self.probes = 0  # TCP probes
        self.udp = 0  # UDP probes
        self.answered = 0  # SYN-ACKs that came back
        self.stealth = 0  # NULL/FIN/Xmas probes
        self.last = 0  # last target, host << 16 | port


STEALTH = {0: "NULL", FIN: "FIN", FIN | PSH | URG: "Xmas"}


class PortScanDetector(Detector):
    name = "portscan"
    config_class = PortScanConfig
    wants = frozenset({"tcp_syn", "udp"})
    config: PortScanConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        if pkt.proto == PROTO_TCP:
            stealth = self._tcp_probe(pkt)
            if stealth is None:
                return
        elif pkt.proto == PROTO_UDP:
            if not self._udp_probe(pkt):
                return
            stealth = ""
        else:
            return
        state = self.table.get_or_create(pkt.src, lambda: _Source(pkt.ts))
        if pkt.ts - state.start > self.config.window_seconds:
            state.__init__(pkt.ts)
        target = int.from_bytes(pkt.dst, "big")
        state.hosts = sketch_add(state.hosts, target)
        state.last = target << 16 | pkt.dport
        if pkt.proto == PROTO_UDP:
            self._udp(pkt, state, target, emit)
        else:
            self._tcp(pkt, state, target, stealth, emit)

    def _credit(self, opener: bytes) -> None:
        """An answer came back to `opener`: its probes are less likely a scan."""
        state = self.table.get(opener)
        if state is not None:
            state.answered += 1

    def _tcp_probe(self, pkt: Packet) -> str | None:
        """ "" for a SYN, the stealth kind's name for a NULL/FIN/Xmas probe, None otherwise."""
        flags = pkt.tcp_flags & (FIN | SYN | RST | PSH | ACK | URG)
        if flags & ACK:  # most packets: established traffic, and the answers to probes
            if flags == SYN | ACK:  # an answer to whoever sent the SYN
                self._credit(pkt.dst)
            return None
        if flags == SYN:
            return ""
        stealth = STEALTH.get(flags)
        if stealth and nmap_timestamp(pkt):
            return None  # an OS fingerprinting probe: the fingerprint detector's alert
        return stealth

    def _udp_probe(self, pkt: Packet) -> bool:
        if pkt.reply:  # a resolver's or any service's answer, not a probe
            self._credit(pkt.dst)
            return False
        return pkt.dport not in (53, 123, 67, 68, 5353, 137, 138, 1900)  # chatty services

    def _udp(self, pkt: Packet, state: _Source, target: int, emit: Emit) -> None:
        cfg = self.config
        state.udp += 1
        state.pairs = sketch_add(state.pairs, (target << 17) | 0x10000 | pkt.dport)
        if (
            state.udp >= cfg.udp_ports
            and sketch_count(state.pairs) >= cfg.udp_ports
            and sketch_count(state.hosts) <= cfg.vertical_max_hosts
            and state.answered <= cfg.udp_max_answered_ratio * state.udp
        ):
            self._alert(emit, pkt, state, 9100004, "UDP port scan", "udp")

    def _tcp(self, pkt: Packet, state: _Source, target: int, stealth: str, emit: Emit) -> None:
        cfg = self.config
        state.probes += 1
        state.pairs = sketch_add(state.pairs, (target << 17) | pkt.dport)
        if stealth:
            state.stealth += 1
            if state.stealth >= cfg.stealth_probes:
                what = f"TCP {stealth} stealth scan"
                self._alert(emit, pkt, state, 9100003, what, stealth.lower())
                return
        hosts = sketch_count(state.hosts)
        pairs = sketch_count(state.pairs)
        if pairs >= cfg.vertical_ports and hosts <= cfg.vertical_max_hosts:
            self._alert(emit, pkt, state, 9100001, "vertical TCP port scan", "vertical")
        elif (
            hosts >= cfg.horizontal_hosts
            and state.answered <= cfg.horizontal_max_success_ratio * state.probes
        ):
            self._alert(emit, pkt, state, 9100002, "horizontal TCP port scan", "horizontal")

    def _alert(
        self, emit: Emit, pkt: Packet, state: _Source, sid: int, what: str, kind: str
    ) -> None:
        """One alert per scanning source and kind, and for scans of few hosts (vertical, UDP)
        per target host too: a source that scans a second host later gets an alert naming
        it, while after a scan the source's ordinary connections raise nothing more. The
        alert closes the source's window, so the next alert needs a scan of its own."""
        host, port = state.last >> 16, state.last & 0xFFFF
        target = host.to_bytes(len(pkt.src), "big")
        per_host = kind in ("vertical", "udp")
        emit(
            Alert(
                detector=self.name,
                signature_id=sid,
                signature=f"KASTRO SCAN {what}",
                category="Attempted Information Leak",
                severity=2,
                ts=pkt.ts,
                src=pkt.src,
                dst=target,
                proto=pkt.proto,
                sport=pkt.sport,
                dport=port,
                evidence={
                    "scan_type": kind,
                    "distinct_hosts": round(sketch_count(state.hosts)),
                    "distinct_targets": round(sketch_count(state.pairs)),
                    "probes": state.probes + state.udp,
                    "answered": state.answered,
                    "stealth_probes": state.stealth,
                    "window_seconds": self.config.window_seconds,
                },
                dedup=(pkt.src, kind.encode() + (target if per_host else b"")),
            )
        )
        state.__init__(pkt.ts)  # type: ignore[misc]

    def expire(self, now: float) -> None:
        window = self.config.window_seconds
        self.table.expire(lambda s: now - s.start > 2 * window)
