"""DNS tunnelling and exfiltration, and NXDOMAIN storms.

Reasoning: a tunnel (iodine, dnscat2, DNSExfiltrator) encodes data in query names under one
domain it controls, so one client sends many queries with long, random-looking labels,
each name unique, often of record types that carry much data back (TXT, NULL). Normal
clients ask for few distinct names per domain, in short dictionary-like labels (Shannon
entropy of hostnames is typically below 3.5 bits per character; base32/base64 data is near
4.5-5). We score per (client, registered domain): unique names, long labels, mean label
entropy and TXT/NULL volume. Many NXDOMAIN answers to one client is domain-generation
malware searching for its controller.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import Counter
from dataclasses import dataclass

from monitors.alerts import Alert
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import PROTO_TCP, PROTO_UDP, Packet
from monitors.state import BoundedTable, sketch_add, sketch_count

QTYPE_NAMES = {1: "A", 28: "AAAA", 5: "CNAME", 16: "TXT", 10: "NULL", 15: "MX", 255: "ANY"}
BULK_TYPES = {16, 10}  # TXT, NULL: large answers
# Second-level labels under which registrations happen one level deeper (gov.gr, co.uk...).
SECOND_LEVEL = {"co", "com", "gov", "org", "net", "edu", "ac", "sch"}


@dataclass
class DnsTunnelConfig(DetectorConfig):
    window_seconds: float = 60.0
    min_queries: int = 20
    unique_names: int = 30
    min_mean_entropy: float = 3.5  # bits per character of the subdomain part
    long_label_length: int = 40
    long_labels: int = 10
    bulk_queries: int = 20  # TXT/NULL queries
    nxdomain_storm: int = 50
    max_tracked: int = 50_000


class _Domain:
    __slots__ = ("bulk", "domain", "entropy_sum", "long", "queries", "start", "unique")

    def __init__(self, start: float, domain: str) -> None:
        self.start = start
        self.domain = domain
        self.queries = 0
        self.unique = 0
        self.long = 0
        self.bulk = 0
        self.entropy_sum = 0.0


class _Nx:
    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0


def parse_question(payload: bytes) -> tuple[int, int, int, list[bytes]] | None:
    """(flags, rcode, qtype, labels) of a DNS message's first question, or None if malformed."""
    if len(payload) < 12:
        return None
    _ident, flags, qdcount = struct.unpack_from("!HHH", payload, 0)
    if qdcount < 1:
        return None
    labels: list[bytes] = []
    offset = 12
    while True:
        if offset >= len(payload):
            return None
        length = payload[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 or len(labels) >= 127:  # no compression in a question's first name
            return None
        labels.append(payload[offset + 1 : offset + 1 + length])
        offset += 1 + length
    if offset + 4 > len(payload):
        return None
    (qtype,) = struct.unpack_from("!H", payload, offset)
    return flags, flags & 0x0F, qtype, labels


def registered_domain(labels: list[bytes]) -> tuple[str, list[bytes]]:
    """Split a name into its registered domain and the labels under it."""
    keep = (
        3 if len(labels) >= 3 and labels[-2].lower().decode(errors="replace") in SECOND_LEVEL else 2
    )
    keep = min(keep, len(labels))
    domain = b".".join(labels[-keep:]).lower().decode(errors="replace")
    return domain, labels[:-keep]


def entropy(data: bytes) -> float:
    if not data:
        return 0.0
    counts = Counter(data)
    total = len(data)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


class DnsTunnelDetector(Detector):
    name = "dnstunnel"
    config_class = DnsTunnelConfig
    wants = frozenset({"udp", "tcp_dns"})  # DNS over TCP only, not every TCP segment
    config: DnsTunnelConfig

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.nx: BoundedTable[bytes, _Nx] = BoundedTable(self.config.max_tracked)

    def observe(self, pkt: Packet, emit: Emit) -> None:
        if pkt.dport != 53 and pkt.sport != 53:
            return
        payload = pkt.payload
        if pkt.proto == PROTO_TCP:
            payload = payload[2:]  # DNS over TCP: a 2-byte length first
        elif pkt.proto != PROTO_UDP:
            return
        question = parse_question(payload)
        if question is None:
            return
        flags, rcode, qtype, labels = question
        if flags & 0x8000:  # a response
            if rcode == 3:
                self._nxdomain(pkt, emit)
            return
        if len(labels) < 2:
            return
        domain, sub = registered_domain(labels)
        key = pkt.src + domain.encode()
        state = self.table.get_or_create(key, lambda: _Domain(pkt.ts, domain))
        cfg = self.config
        if pkt.ts - state.start > cfg.window_seconds:
            state.__init__(pkt.ts, domain)
        state.queries += 1
        subname = b".".join(sub)
        state.unique = sketch_add(state.unique, zlib.crc32(subname.lower()))
        state.entropy_sum += entropy(subname.replace(b".", b""))
        if any(len(label) >= cfg.long_label_length for label in sub):
            state.long += 1
        if qtype in BULK_TYPES:
            state.bulk += 1
        if state.queries < cfg.min_queries:
            return
        unique = sketch_count(state.unique)
        mean_entropy = state.entropy_sum / state.queries
        reasons = []
        if unique >= cfg.unique_names and mean_entropy >= cfg.min_mean_entropy:
            reasons.append("many unique high-entropy names")
        if state.long >= cfg.long_labels:
            reasons.append("long labels")
        if state.bulk >= cfg.bulk_queries:
            reasons.append("TXT/NULL volume")
        if reasons:
            emit(
                self.flow_alert(
                    pkt,
                    9100031,
                    "KASTRO DNS tunnel or exfiltration suspected",
                    "Potentially Bad Traffic",
                    1,
                    {
                        "domain": domain,
                        "reasons": reasons,
                        "queries": state.queries,
                        "unique_names_estimate": round(unique),
                        "mean_label_entropy": round(mean_entropy, 2),
                        "long_label_queries": state.long,
                        "txt_null_queries": state.bulk,
                        "last_qtype": QTYPE_NAMES.get(qtype, str(qtype)),
                    },
                    dedup=(pkt.src, domain.encode()),
                )
            )

    def _nxdomain(self, pkt: Packet, emit: Emit) -> None:
        client = pkt.dst
        state = self.nx.get_or_create(client, lambda: _Nx(pkt.ts))
        if pkt.ts - state.start > self.config.window_seconds:
            state.__init__(pkt.ts)  # type: ignore[misc]
        state.count += 1
        if state.count >= self.config.nxdomain_storm:
            emit(
                Alert(
                    detector=self.name,
                    signature_id=9100032,
                    signature="KASTRO NXDOMAIN storm (possible DGA malware)",
                    category="Potentially Bad Traffic",
                    severity=2,
                    ts=pkt.ts,
                    src=client,
                    dst=pkt.src,
                    proto=pkt.proto,
                    sport=pkt.dport,
                    dport=pkt.sport,
                    evidence={
                        "nxdomain_answers": state.count,
                        "window_seconds": self.config.window_seconds,
                    },
                    dedup=(client, b""),
                )
            )

    @property
    def tracked(self) -> int:
        return len(self.table) + len(self.nx)

    @property
    def evictions(self) -> int:
        return self.table.evictions + self.nx.evictions

    def expire(self, now: float) -> None:
        window = self.config.window_seconds
        self.table.expire(lambda s: now - s.start > 2 * window)
        self.nx.expire(lambda s: now - s.start > 2 * window)
