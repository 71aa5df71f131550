"""Answers are not probes: direction-aware UDP, and scan alerts that name every host scanned."""

from __future__ import annotations

import random

from monitors.alerts import ip_text
from monitors.state import Conversations
from tests.monitors.craft import DNS, DNSQR, IP, TCP, UDP, Raw, eth, run, sids

CLIENT, RESOLVER, UPSTREAM = "10.66.0.20", "10.66.0.53", "192.0.2.53"
ATTACKER, VICTIM, SECOND = "10.66.0.66", "10.66.0.10", "10.66.0.11"


def udp(ts: float, src: str, dst: str, sport: int, dport: int, payload: object):
    return (ts, eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def test_a_busy_resolver_is_not_a_udp_scanner():
    """60 names in 30 s through the municipality's resolver: its answers go to 60 client
    ports, and its own queries upstream come back from port 53. Nothing is a scan."""
    rng = random.Random(5)
    packets = []
    for i in range(60):
        ts, port, upstream_port = 1000 + i * 0.5, rng.randrange(32768, 61000), 40000 + i
        name = f"host{i}.example.org"
        query = DNS(id=i, rd=1, qd=DNSQR(qname=name))
        answer = DNS(id=i, qr=1, qd=DNSQR(qname=name))
        packets += [
            udp(ts, CLIENT, RESOLVER, port, 53, query),
            udp(ts + 0.01, RESOLVER, UPSTREAM, upstream_port, 53, query),
            udp(ts + 0.05, UPSTREAM, RESOLVER, 53, upstream_port, answer),
            udp(ts + 0.06, RESOLVER, CLIENT, 53, port, answer),
        ]
    assert run(packets) == []


def test_a_stun_server_answering_many_clients_is_not_a_scanner():
    """Two offices behind NAT, 40 devices each: the server answers 80 ports on two hosts."""
    packets = []
    for i in range(80):
        client, port = f"10.66.1.{i % 2 + 1}", 50000 + i
        ts = 1000 + i * 0.2
        packets += [
            udp(ts, client, RESOLVER, port, 3478, Raw(b"\x00\x01" + bytes(18))),
            udp(ts + 0.01, RESOLVER, client, 3478, port, Raw(b"\x01\x01" + bytes(18))),
        ]
    assert run(packets) == []


def test_answers_on_high_ports_are_known_by_their_opening():
    """A media server answers RTP from its own high port to each caller's high port: the
    caller opened the flow, so the server's packets are answers."""
    packets = []
    for i in range(40):
        caller_port, server_port = 20000 + 2 * i, 30000 + 2 * i
        ts = 1000 + i * 0.1
        packets += [
            udp(ts, CLIENT, RESOLVER, caller_port, server_port, Raw(bytes(160))),
            udp(ts + 0.02, RESOLVER, CLIENT, server_port, caller_port, Raw(bytes(160))),
        ]
    assert run(packets) == []


def test_a_udp_scan_from_port_53_is_still_a_scan():
    """`nmap -sU -g 53`: the source port of a resolver, but the probes go to low ports."""
    packets = [
        (1000 + p * 0.01, eth() / IP(src=ATTACKER, dst=VICTIM) / UDP(sport=53, dport=p))
        for p in range(1, 101)
    ]
    assert sids(run(packets)) == [9100004]


def scan(host: str, start: float, ports: int = 100) -> list[tuple[float, object]]:
    syn = eth() / IP(src=ATTACKER, dst=host) / TCP(sport=40000, flags="S")
    out = []
    for p in range(1, ports + 1):
        probe = syn.copy()
        probe[TCP].dport = p
        out.append((start + p * 0.01, probe))
    return out


def test_a_scanner_that_moves_to_a_second_host_gets_an_alert_naming_it():
    alerts = run(scan(VICTIM, 1000.0) + scan(SECOND, 1060.0))
    named = [(a.signature_id, ip_text(a.src), ip_text(a.dst)) for a in alerts]
    assert named == [(9100001, ATTACKER, VICTIM), (9100001, ATTACKER, SECOND)]


def test_a_long_scan_of_one_host_is_one_alert():
    assert len(run(scan(VICTIM, 1000.0, ports=1000))) == 1


def test_conversations_stay_within_their_cap():
    table = Conversations(cap=1000)
    rng = random.Random(7)
    for i in range(50_000):
        table.answer(rng.randbytes(4), rng.randrange(1024, 65535), b"\x0a\x00\x00\x01", 5000, i)
    assert len(table.seen) == 1000
    assert table.evictions >= 48_000  # those from service ports to ephemeral ones are answers
