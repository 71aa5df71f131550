"""ARP cache poisoning, gratuitous-ARP storms, and rogue DHCP servers.

Reasoning: on a municipal LAN an IPv4 address keeps its MAC address for hours (DHCP leases,
static servers). An ARP packet that binds an address already seen recently to a *different*
MAC is how arpspoof/ettercap redirect traffic (typically claiming the gateway's address), so
a binding change within ``binding_ttl_seconds`` is reported with both MACs. Many gratuitous
ARPs from one MAC in a few seconds is the same attack, or a broken device. A DHCP server
that is not on the configured list hands out a rogue gateway or DNS server; with no list, a
second server answering on the segment is reported.

DHCP starvation (dhcpstarv, dhcpig, Yersinia) asks for leases with a new random client MAC
each time until the pool is empty, so that the attacker's own rogue server serves everyone
after. A LAN's clients are a few hundred machines that renew their leases for days: requests
(DISCOVER or REQUEST) from ``dhcp_starvation_clients`` distinct client MACs in
``dhcp_starvation_window_seconds`` is a flood of made-up clients (the tools send hundreds per
second). A building whose 100 PCs all boot within the same 10 s after a power cut comes
close; raise the setting where that happens.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from monitors.alerts import Alert, mac_text
from monitors.detectors.base import ConfigError, Detector, DetectorConfig, Emit
from monitors.packet import ETH_ARP, PROTO_UDP, Packet
from monitors.state import BoundedTable, sketch_add, sketch_count

ZERO_IP = b"\x00\x00\x00\x00"
DHCP_MAGIC = b"\x63\x82\x53\x63"
DHCP_DISCOVER, DHCP_OFFER, DHCP_REQUEST, DHCP_ACK = 1, 2, 3, 5


@dataclass
class ArpSpoofConfig(DetectorConfig):
    binding_ttl_seconds: float = 3600.0
    gratuitous_window_seconds: float = 10.0
    gratuitous_max: int = 10
    dhcp_servers: tuple[str, ...] = ()  # allowed DHCP server addresses; empty: learn the first
    dhcp_starvation_window_seconds: float = 10.0
    dhcp_starvation_clients: int = 100  # distinct client MACs asking for a lease in the window

    def check(self, name: str) -> None:
        for i, text in enumerate(self.dhcp_servers):
            try:
                ipaddress.IPv4Address(text)
            except ValueError as exc:
                raise ConfigError(
                    f"detectors.{name}.dhcp_servers[{i}]: '{text}' is not an IPv4 address; "
                    "list the DHCP servers' addresses, e.g. [10.20.1.5]"
                ) from exc


class _Binding:
    __slots__ = ("mac", "seen")

    def __init__(self, mac: bytes, seen: float) -> None:
        self.mac = mac
        self.seen = seen


class _Requests:
    __slots__ = ("clients", "requests", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.clients = 0  # sketch of distinct client MACs (chaddr)
        self.requests = 0


class ArpSpoofDetector(Detector):
    name = "arpspoof"
    config_class = ArpSpoofConfig
    wants = frozenset({"arp", "udp"})
    config: ArpSpoofConfig

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gratuitous: BoundedTable[bytes, list[float]] = BoundedTable(10_000)
        self.dhcp_seen: BoundedTable[bytes, float] = BoundedTable(64)
        self.allowed_dhcp = {ipaddress.IPv4Address(a).packed for a in self.config.dhcp_servers}
        self.requests = _Requests(0.0)

    def observe(self, pkt: Packet, emit: Emit) -> None:
        if pkt.ethertype == ETH_ARP:
            self._arp(pkt, emit)
        elif pkt.proto == PROTO_UDP and pkt.sport == 67 and pkt.dport == 68:
            self._dhcp(pkt, emit)
        elif pkt.proto == PROTO_UDP and pkt.sport == 68 and pkt.dport == 67:
            self._dhcp_request(pkt, emit)

    def _arp(self, pkt: Packet, emit: Emit) -> None:
        ip, mac = pkt.src, pkt.arp_sender_mac
        if ip == ZERO_IP:  # address probes (RFC 5227) claim nothing
            return
        binding = self.table.get(ip)
        if binding is None:
            self.table.get_or_create(ip, lambda: _Binding(mac, pkt.ts))
        elif binding.mac != mac and pkt.ts - binding.seen <= self.config.binding_ttl_seconds:
            emit(
                Alert(
                    detector=self.name,
                    signature_id=9100021,
                    signature="KASTRO ARP binding changed (possible ARP spoofing)",
                    category="Potential Corporate Privacy Violation",
                    severity=1,
                    ts=pkt.ts,
                    src=ip,
                    dst=pkt.arp_target_ip,
                    proto_name="ARP",
                    evidence={
                        "claimed_ip_mac_old": mac_text(binding.mac),
                        "claimed_ip_mac_new": mac_text(mac),
                        "arp_op": "reply" if pkt.arp_op == 2 else "request",
                        "sender_mac": mac_text(pkt.src_mac),
                    },
                    dedup=(ip, mac),
                )
            )
            return  # keep the established binding: the newcomer has to prove itself
        else:
            binding.mac, binding.seen = mac, pkt.ts
        if pkt.src == pkt.arp_target_ip or (pkt.arp_op == 2 and pkt.dst_mac == b"\xff" * 6):
            times = self.gratuitous.get_or_create(mac, list)
            window = self.config.gratuitous_window_seconds
            times.append(pkt.ts)
            while times and pkt.ts - times[0] > window:
                times.pop(0)
            del times[: max(0, len(times) - self.config.gratuitous_max - 1)]
            if len(times) > self.config.gratuitous_max:
                emit(
                    Alert(
                        detector=self.name,
                        signature_id=9100022,
                        signature="KASTRO gratuitous ARP storm",
                        category="Potential Corporate Privacy Violation",
                        severity=2,
                        ts=pkt.ts,
                        src=ip,
                        proto_name="ARP",
                        evidence={
                            "sender_mac": mac_text(mac),
                            "gratuitous_arps": len(times),
                            "window_seconds": window,
                        },
                        dedup=(mac, b""),
                    )
                )

    def _dhcp(self, pkt: Packet, emit: Emit) -> None:
        payload = pkt.payload
        if len(payload) < 240 or payload[0] != 2 or payload[236:240] != DHCP_MAGIC:
            return
        message, server_id = _dhcp_options(payload[240:])
        if message not in (DHCP_OFFER, DHCP_ACK):
            return
        server = server_id or pkt.src
        known = self.allowed_dhcp or set(self.dhcp_seen.data)
        if not known:
            self.dhcp_seen.get_or_create(server, lambda: pkt.ts)
            return
        if server in known:
            return
        offered = ".".join(str(b) for b in payload[16:20])
        emit(
            Alert(
                detector=self.name,
                signature_id=9100023,
                signature="KASTRO rogue DHCP server",
                category="Potential Corporate Privacy Violation",
                severity=1,
                ts=pkt.ts,
                src=server,
                dst=pkt.dst,
                proto=PROTO_UDP,
                sport=67,
                dport=68,
                evidence={
                    "server_mac": mac_text(pkt.src_mac),
                    "offered_address": offered,
                    "known_servers": sorted(".".join(str(b) for b in s) for s in known),
                    "configured": bool(self.allowed_dhcp),
                },
                dedup=(server, b""),
            )
        )

    def _dhcp_request(self, pkt: Packet, emit: Emit) -> None:
        payload = pkt.payload
        if len(payload) < 240 or payload[0] != 1 or payload[236:240] != DHCP_MAGIC:
            return
        message, _server = _dhcp_options(payload[240:])
        if message not in (DHCP_DISCOVER, DHCP_REQUEST):
            return
        cfg = self.config
        state = self.requests
        if pkt.ts - state.start > cfg.dhcp_starvation_window_seconds:
            state.__init__(pkt.ts)  # type: ignore[misc]
        client = bytes(payload[28:34])
        state.clients = sketch_add(state.clients, int.from_bytes(client, "big"))
        state.requests += 1
        distinct = sketch_count(state.clients)
        if distinct < cfg.dhcp_starvation_clients:
            return
        emit(
            Alert(
                detector=self.name,
                signature_id=9100024,
                signature="KASTRO DHCP starvation (lease requests from many made-up clients)",
                category="Attempted Denial of Service",
                severity=1,
                ts=pkt.ts,
                src=pkt.src,
                dst=pkt.dst,
                proto=PROTO_UDP,
                sport=68,
                dport=67,
                evidence={
                    "distinct_client_macs": distinct,
                    "requests": state.requests,
                    "last_client_mac": mac_text(client),
                    "sender_mac": mac_text(pkt.src_mac),
                    "window_seconds": cfg.dhcp_starvation_window_seconds,
                },
                dedup=(b"dhcp-starvation", b""),
            )
        )

    def expire(self, now: float) -> None:
        ttl = self.config.binding_ttl_seconds
        self.table.expire(lambda b: now - b.seen > ttl)


def _dhcp_options(options: bytes) -> tuple[int, bytes]:
    message, server = 0, b""
    i = 0
    while i < len(options):
        code = options[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        value = options[i + 2 : i + 2 + length]
        if code == 53 and length == 1:
            message = value[0]
        elif code == 54 and length == 4:
            server = bytes(value)
        i += 2 + length
    return message, server
