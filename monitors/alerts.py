"""Alerts as Suricata EVE JSON lines, deduplicated and rate-limited.

Each alert carries Suricata's fields (``timestamp``, ``flow_id``, ``community_id``,
``event_type: alert``, addresses, ports, ``proto``, ``alert.{signature, signature_id,
category, severity}``) so Filebeat's Suricata module, jq and SIEMs read it unchanged, plus a
``kastro`` object with the detector's evidence. Repeats of one (detector, source, target)
within ``suppress_seconds`` are counted, not written, so a flood never becomes an alert flood.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

SEVERITY_NAMES = {1: "high", 2: "medium", 3: "low"}


def ip_text(raw: bytes) -> str:
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return ""


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# ICMP message types and their counterparts (request <-> reply), per the Community ID spec:
# both directions of an exchange get one ID; other ICMP messages are one-way.
_ICMP_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMPV6_PAIRS = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    144: 145,
    145: 144,
    146: 147,
    147: 146,
}


def community_id(src: bytes, dst: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 (corelight/community-id-spec) of a flow, as Suricata and Zeek write it.

    For ICMP, ``sport`` is the message type and ``dport`` the code.
    """
    if not src or not dst:
        return ""
    one_way = False
    if proto in (1, 58):
        pairs = _ICMP_PAIRS if proto == 1 else _ICMPV6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    if not one_way and (src, sport) > (dst, dport):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + struct.pack("!BBHH", proto, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()  # noqa: S324 (spec)


def flow_id(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> int:
    digest = hashlib.blake2b(src + dst + struct.pack("!BHH", proto, sport, dport), digest_size=7)
    return int.from_bytes(digest.digest(), "big")


@dataclass
class Alert:
    """One detection, before it is written."""

    detector: str
    signature_id: int
    signature: str
    category: str
    severity: int  # 1 high, 2 medium, 3 low (Suricata's convention)
    ts: float
    src: bytes
    dst: bytes = b""
    proto: int = 0
    sport: int = 0
    dport: int = 0
    evidence: dict[str, Any] = field(default_factory=dict)
    proto_name: str = ""
    # What makes two alerts "the same" for deduplication when it is not (src, dst): e.g. a
    # horizontal scan is one attack however many hosts it touches.
    dedup: tuple[bytes, bytes] | None = None

    @property
    def key(self) -> tuple[int, bytes, bytes]:
        src, dst = self.dedup or (self.src, self.dst)
        return (self.signature_id, src, dst)

    def eve(self, iface: str = "") -> dict[str, Any]:
        record: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
            "flow_id": flow_id(self.src, self.dst, self.proto, self.sport, self.dport),
            "event_type": "alert",
            "src_ip": ip_text(self.src),
            "src_port": self.sport,
            "dest_ip": ip_text(self.dst),
            "dest_port": self.dport,
            "proto": self.proto_name
            or {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP"}.get(self.proto, ""),
            "alert": {
                "action": "allowed",
                "gid": 1,
                "signature_id": self.signature_id,
                "rev": 1,
                "signature": self.signature,
                "category": self.category,
                "severity": self.severity,
            },
            "kastro": {"detector": self.detector, **self.evidence},
        }
        cid = community_id(self.src, self.dst, self.proto, self.sport, self.dport)
        if cid:
            record["community_id"] = cid
        if iface:
            record["in_iface"] = iface
        return record


def eve_line(record: dict[str, Any]) -> str:
    """One EVE record as one line. JSON allows U+2028, U+2029 and U+0085 raw, but readers that
    split on Unicode line breaks (Python's str.splitlines, many log shippers) would cut the
    alert in pieces, so they are escaped like the ASCII control characters."""
    text = json.dumps(record, ensure_ascii=False)
    return text.translate(_LINE_BREAKS) + "\n"


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class AlertSink:
    """Deduplicates, rate-limits and writes alerts as EVE JSON lines.

    Nothing of an alert is kept once it is written: memory stays bounded (the suppression
    table holds at most ``table_cap`` keys) however many alerts an attacker provokes.
    Callers that want the alerts (tests, the CLI's summary) pass ``on_write``.
    """

    def __init__(
        self,
        out: IO[str] | None,
        suppress_seconds: float = 300.0,
        max_per_second: float = 50.0,
        iface: str = "",
        table_cap: int = 100_000,
        on_write: Callable[[Alert], None] | None = None,
    ) -> None:
        self.out = out
        self.suppress_seconds = suppress_seconds
        self.max_per_second = max_per_second
        self.iface = iface
        self.table_cap = table_cap
        self._last: dict[tuple[int, bytes, bytes], float] = {}
        self._tokens = max_per_second
        self._token_time = 0.0
        self.on_write = on_write
        self.written = 0
        self.suppressed = 0
        self.rate_limited = 0

    def emit(self, alert: Alert) -> bool:
        """Write the alert unless it repeats a recent one or the rate limit is hit."""
        last = self._last.get(alert.key)
        if last is not None and alert.ts - last < self.suppress_seconds:
            self.suppressed += 1
            return False
        elapsed = max(0.0, alert.ts - self._token_time)
        self._token_time = alert.ts
        self._tokens = min(self.max_per_second, self._tokens + elapsed * self.max_per_second)
        if self._tokens < 1:
            self.rate_limited += 1
            return False
        self._tokens -= 1
        if len(self._last) >= self.table_cap:
            del self._last[next(iter(self._last))]
        self._last[alert.key] = alert.ts
        self.written += 1
        if self.on_write is not None:
            self.on_write(alert)
        if self.out is not None:
            self.out.write(eve_line(alert.eve(self.iface)))
            self.out.flush()
        return True


def now() -> float:
    return time.time()
