"""A deterministic mixed pcap for the monitor benchmark, with labelled attacks.

Normal traffic of a municipality (HTTP and TLS sessions, DNS, ping, ARP) with six attacks
placed at known times: a vertical port scan, a spoofed SYN flood, a DNS tunnel, SSH brute
force, ARP spoofing and an ICMP sweep. Frames are built with struct (scapy would take
minutes for a million packets) and carry correct IP/TCP/UDP checksums. Same seed, same file.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import struct
from pathlib import Path

CLIENT_NET, SERVER_NET = "10.20.0.", "10.20.2."
GW_MAC = bytes.fromhex("020000000001")


def ip4(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_of(addr: bytes) -> bytes:
    return b"\x02\x00" + addr


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    return checksum(src + dst + struct.pack("!BBH", 0, proto, len(segment)) + segment)


def tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    seq: int,
    ack: int,
    data: bytes = b"",
) -> bytes:
    seg = (
        struct.pack(
            "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0
        )
        + data
    )
    seg = seg[:16] + struct.pack("!H", l4_checksum(src, dst, 6, seg)) + seg[18:]
    return ether(src, dst, 0x0800, ipv4(src, dst, 6, seg))


def udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    seg = seg[:6] + struct.pack("!H", l4_checksum(src, dst, 17, seg) or 0xFFFF) + seg[8:]
    return ether(src, dst, 0x0800, ipv4(src, dst, 17, seg))


def icmp_echo(src: bytes, dst: bytes, kind: int, ident: int, seq: int) -> bytes:
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + b"kastro-bench-ping" * 2
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ether(src, dst, 0x0800, ipv4(src, dst, 1, body))


def ether(src: bytes, dst: bytes, ethertype: int, payload: bytes) -> bytes:
    return mac_of(dst) + mac_of(src) + struct.pack("!H", ethertype) + payload


def arp(
    op: int, sender_mac: bytes, sender_ip: bytes, target_ip: bytes, dst_mac: bytes = b"\xff" * 6
) -> bytes:
    body = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac, sender_ip, b"\0" * 6, target_ip
    )
    return dst_mac + sender_mac + b"\x08\x06" + body


def dns_message(ident: int, name: str, qtype: int, response: bool, rcode: int = 0) -> bytes:
    flags = 0x8180 | rcode if response else 0x0100
    question = (
        b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )
    answer = b""
    if response and rcode == 0:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([10, 20, 2, 10])
    return struct.pack("!HHHHHH", ident, flags, 1, 1 if answer else 0, 0, 0) + question + answer


class Writer:
    def __init__(self, path: Path) -> None:
        self.handle = path.open("wb")
        self.handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.count = 0

    def add(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        self.handle.write(
            struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame
        )
        self.count += 1


def http_session(
    rng: random.Random, start: float, client: bytes, server: bytes, port: int
) -> list[tuple[float, bytes]]:
    sport = rng.randrange(20000, 60000)
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    t = start
    out = [(t, tcp(client, server, sport, port, 0x02, cseq, 0))]
    out.append((t := t + 0.0004, tcp(server, client, port, sport, 0x12, sseq, cseq + 1)))
    out.append((t := t + 0.0002, tcp(client, server, sport, port, 0x10, cseq + 1, sseq + 1)))
    request = (
        b"GET /eservices/form%d HTTP/1.1\r\nHost: intranet.kastro.example.gr\r\n\r\n"
        % rng.randrange(100)
        if port == 80
        else rng.randbytes(300)
    )
    out.append(
        (t := t + 0.0003, tcp(client, server, sport, port, 0x18, cseq + 1, sseq + 1, request))
    )
    cseq += 1 + len(request)
    sseq += 1
    for _ in range(rng.randrange(2, 7)):  # response segments and their ACKs
        body = (
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1200\r\n\r\n" + b"x" * 1160)
            if port == 80
            else rng.randbytes(1200)
        )
        out.append((t := t + 0.0005, tcp(server, client, port, sport, 0x18, sseq, cseq, body)))
        sseq += len(body)
        out.append((t := t + 0.0002, tcp(client, server, sport, port, 0x10, cseq, sseq)))
    out.append((t := t + 0.001, tcp(client, server, sport, port, 0x11, cseq, sseq)))
    out.append((t := t + 0.0003, tcp(server, client, port, sport, 0x11, sseq, cseq + 1)))
    out.append((t + 0.0002, tcp(client, server, sport, port, 0x10, cseq + 1, sseq + 1)))
    return out


def generate(path: Path, packets: int, seed: int = 2026) -> dict[str, float]:
    rng = random.Random(seed)
    clients = [ip4(f"{CLIENT_NET}{i}") for i in range(10, 130)]
    servers = [ip4(f"{SERVER_NET}{i}") for i in (10, 11, 12)]
    dns_server, gateway = ip4("10.20.2.53"), ip4("10.20.0.1")
    attacker = ip4("10.20.0.66")
    duration = packets / 4000  # about 4,000 packets per second of traffic time
    attacks = {  # label -> start time (traffic seconds from 0)
        "portscan": duration * 0.15,
        "synflood": duration * 0.30,
        "dnstunnel": duration * 0.45,
        "bruteforce": duration * 0.60,
        "arpspoof": duration * 0.75,
        "sweep": duration * 0.85,
    }
    events: list[tuple[float, bytes]] = []

    # Labelled attacks.
    t = attacks["portscan"]
    for port in range(1, 1001):
        events.append(
            (t + port * 0.001, tcp(attacker, servers[0], 45000, port, 0x02, 1000 + port, 0))
        )
        events.append(
            (
                t + port * 0.001 + 0.0002,
                tcp(servers[0], attacker, port, 45000, 0x14, 0, 1001 + port),
            )
        )
    t = attacks["synflood"]
    for i in range(20000):
        events.append(
            (
                t + i * 0.0001,
                tcp(
                    rng.randbytes(4),
                    servers[1],
                    rng.randrange(1024, 65535),
                    80,
                    0x02,
                    rng.getrandbits(32),
                    0,
                ),
            )
        )
    t = attacks["dnstunnel"]
    for i in range(500):
        label = base64.b32encode(rng.randbytes(36)).decode().rstrip("=").lower()
        events.append(
            (
                t + i * 0.05,
                udp(
                    clients[5],
                    dns_server,
                    33000,
                    53,
                    dns_message(i, f"{label}.x.exfil.example", 10, False),
                ),
            )
        )
    t = attacks["bruteforce"]
    for i in range(60):
        events.append((t + i * 0.5, tcp(attacker, servers[2], 50000 + i, 22, 0x02, i, 0)))
        events.append(
            (t + i * 0.5 + 0.0003, tcp(servers[2], attacker, 22, 50000 + i, 0x12, 7, i + 1))
        )
    t = attacks["arpspoof"]
    events.append((t, arp(2, mac_of(gateway), gateway, clients[0], mac_of(clients[0]))))
    for i in range(10):
        events.append(
            (t + 1 + i * 2, arp(2, mac_of(attacker), gateway, clients[0], mac_of(clients[0])))
        )
    t = attacks["sweep"]
    for i in range(1, 255):
        events.append((t + i * 0.01, icmp_echo(attacker, ip4(f"10.20.1.{i}"), 8, 99, i)))

    # Normal traffic fills the rest.
    names = [
        "intranet.kastro.example.gr",
        "www.gov.gr",
        "mail.kastro.example.gr",
        "updates.example.org",
        "www.ktimatologio.gr",
        "static.example.net",
    ]
    normal_target = packets - len(events)
    normal = 0
    t = 0.0
    while normal < normal_target:
        t += rng.expovariate(4000 / 14)
        roll = rng.random()
        client = rng.choice(clients)
        if roll < 0.80:
            session = http_session(rng, t, client, rng.choice(servers), rng.choice((80, 443)))
        elif roll < 0.93:
            ident, name = rng.getrandbits(16), rng.choice(names)
            sport = rng.randrange(20000, 60000)
            session = [
                (t, udp(client, dns_server, sport, 53, dns_message(ident, name, 1, False))),
                (t + 0.001, udp(dns_server, client, 53, sport, dns_message(ident, name, 1, True))),
            ]
        elif roll < 0.98:
            seq = rng.randrange(65535)
            session = [
                (t, icmp_echo(client, gateway, 8, 7, seq)),
                (t + 0.0003, icmp_echo(gateway, client, 0, 7, seq)),
            ]
        else:
            session = [
                (t, arp(1, mac_of(client), client, gateway)),
                (t + 0.0001, arp(2, mac_of(gateway), gateway, client, mac_of(client))),
            ]
        events.extend(session[: normal_target - normal])
        normal += len(session[: normal_target - normal])
    events.sort(key=lambda e: e[0])
    writer = Writer(path)
    base = 1_764_000_000.0
    for ts, frame in events:
        writer.add(base + ts, frame)
    writer.handle.close()
    return {label: base + start for label, start in attacks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    args = parser.parse_args()
    labels = generate(args.output, args.packets)
    args.output.with_suffix(".labels.json").write_text(json.dumps(labels, indent=2))


if __name__ == "__main__":
    main()
