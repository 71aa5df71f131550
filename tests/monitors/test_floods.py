"""Inbound floods (monitors/detectors/flood.py): each kind gives its alert within a second,
once per victim, and ordinary busy traffic gives none."""

from __future__ import annotations

import random
import struct
import tracemalloc

from monitors.alerts import Alert, AlertSink, ip_text
from monitors.config import parse_config
from monitors.engine import Engine

VICTIM, RESOLVER, UPSTREAM = "10.66.0.10", "10.66.0.53", "192.0.2.53"
MACS = bytes.fromhex("020000000001020000000066")


def addr(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def ipv4(src: bytes, dst: bytes, proto: int, l4: bytes, frag: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0, src, dst)
    return MACS + b"\x08\x00" + header + l4


def udp(src: bytes, dst: bytes, sport: int, dport: int, size: int = 100) -> bytes:
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + size, 0) + bytes(size))


def tcp(src: bytes, dst: bytes, sport: int, dport: int, flags: int) -> bytes:
    segment = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 1024, 0, 0)
    return ipv4(src, dst, 6, segment)


def icmp(src: bytes, dst: bytes, kind: int = 8) -> bytes:
    return ipv4(src, dst, 1, struct.pack("!BBHHH", kind, 0, 0, 1, 1) + bytes(56))


def fragment(src: bytes, dst: bytes) -> bytes:
    return ipv4(src, dst, 17, bytes(1400), frag=185)  # offset 1480 bytes: a later fragment


def run(frames: list[tuple[float, bytes]]) -> tuple[list[Alert], Engine]:
    cfg = parse_config({"home_networks": ["10.0.0.0/8"]})
    written: list[Alert] = []
    engine = Engine(cfg.build_detectors(), AlertSink(None, 300.0, 1e9, on_write=written.append))
    batch = [(ts, frame, len(frame)) for ts, frame in frames]
    for i in range(0, len(batch), 512):
        engine.process_batch(batch[i : i + 512])
    return [a for a in written if a.detector == "flood"], engine


def spoofed(rng: random.Random) -> bytes:
    return bytes(
        [rng.randrange(1, 224), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)]
    )


def flood(make, rate: float, seconds: float, start: float = 1000.0, seed: int = 1):
    rng = random.Random(seed)
    count = int(rate * seconds)
    return [(start + i / rate, make(rng)) for i in range(count)]


def one_alert(alerts: list[Alert], sid: int, start: float = 1000.0) -> Alert:
    assert [(a.signature_id, ip_text(a.dst)) for a in alerts] == [(sid, VICTIM)]
    assert alerts[0].ts - start <= 1.0, "alert more than a second after the flood began"
    return alerts[0]


def test_dns_amplification_names_the_protocol_and_counts_the_reflectors():
    reflectors = [spoofed(random.Random(i)) for i in range(300)]

    def answer(r: random.Random) -> bytes:
        return udp(r.choice(reflectors), addr(VICTIM), 53, r.randrange(1024, 65535), 1200)

    alerts, _ = run(flood(answer, 20_000, 2))
    alert = one_alert(alerts, 9100071)
    assert alert.signature == "KASTRO DOS DNS UDP reflection/amplification flood"
    assert alert.evidence["reflected_protocol"] == "DNS"
    assert 200 <= alert.evidence["distinct_sources"] <= 400
    assert alert.evidence["megabits_per_second"] > 50


def test_memcached_and_ntp_reflection_are_named():
    for port, name in ((11211, "memcached"), (123, "NTP"), (1900, "SSDP"), (389, "CLDAP")):
        alerts, _ = run(
            flood(lambda r, p=port: udp(spoofed(r), addr(VICTIM), p, 80, 400), 10_000, 1)
        )
        assert one_alert(alerts, 9100071).evidence["reflected_protocol"] == name


def test_a_fragment_flood():
    one_alert(run(flood(lambda r: fragment(spoofed(r), addr(VICTIM)), 8_000, 1))[0], 9100072)


def test_syn_ack_reflection():
    alerts, _ = run(
        flood(
            lambda r: tcp(spoofed(r), addr(VICTIM), 80, r.randrange(1024, 65535), 0x12), 10_000, 1
        )
    )
    one_alert(alerts, 9100073)


def test_icmp_flood():
    one_alert(run(flood(lambda r: icmp(spoofed(r), addr(VICTIM)), 10_000, 1))[0], 9100074)


def test_a_host_answering_a_ping_flood_does_not_flood_the_pinger():
    """hping3 --icmp from a home host: the flood is against the pinged host; its echo replies
    answer the pinger's own requests (measured live in test_real_tools_live.py too)."""
    pinger = addr("10.66.0.66")
    frames = []
    for ts, _ in flood(lambda r: b"", 5_000, 1.2):
        frames += [(ts, icmp(pinger, addr(VICTIM))), (ts + 1e-4, icmp(addr(VICTIM), pinger, 0))]
    one_alert(run(frames)[0], 9100074)


def test_echo_replies_nobody_asked_for_are_a_flood():
    """Smurf-style: replies from many hosts to a victim that sent no request."""
    one_alert(run(flood(lambda r: icmp(spoofed(r), addr(VICTIM), 0), 10_000, 1))[0], 9100074)


def test_volumetric_udp_from_random_ports():
    alerts, _ = run(
        flood(lambda r: udp(spoofed(r), addr(VICTIM), r.randrange(1024, 65535), 80), 40_000, 1)
    )
    one_alert(alerts, 9100075)


def test_a_50_ms_burst_is_caught():
    alerts, _ = run(flood(lambda r: udp(spoofed(r), addr(VICTIM), 123, 80, 400), 100_000, 0.05))
    one_alert(alerts, 9100071)


def test_a_long_flood_is_one_alert_with_its_peak():
    slow = flood(lambda r: udp(spoofed(r), addr(VICTIM), 53, 4000, 500), 4_000, 2)
    fast = flood(lambda r: udp(spoofed(r), addr(VICTIM), 53, 4000, 500), 40_000, 1, start=1002.0)
    alerts, _ = run(slow + fast)
    assert len(alerts) == 1 and alerts[0].evidence["packets_per_second"] >= 3_000


def test_below_the_floor_is_quiet():
    alerts, _ = run(flood(lambda r: udp(spoofed(r), addr(VICTIM), 53, 4000), 1_000, 10))
    assert alerts == []


def test_a_busy_resolver_receiving_its_own_answers_is_not_reflected():
    """5,000 upstream answers a second to queries the resolver sent: asked for, not a flood."""
    frames = []
    for i in range(10_000):
        ts, port = 1000 + i / 5000, 20000 + i % 30000
        frames.append((ts, udp(addr(RESOLVER), addr(UPSTREAM), port, 53, 40)))
        frames.append((ts + 0.0001, udp(addr(UPSTREAM), addr(RESOLVER), 53, port, 400)))
    alerts, _ = run(frames)
    assert alerts == []


def test_syn_acks_to_a_host_that_sent_the_syns_are_not_reflection():
    frames = []
    for i in range(10_000):
        ts, port = 1000 + i / 5000, 1024 + i % 60000
        frames.append((ts, tcp(addr(VICTIM), addr(UPSTREAM), port, 443, 0x02)))
        frames.append((ts + 0.0001, tcp(addr(UPSTREAM), addr(VICTIM), 443, port, 0x12)))
    alerts, _ = run(frames)
    assert alerts == []


def test_a_flood_from_150_000_sources_costs_fixed_memory():
    # The port scan table is capped lower than its default, so that every table (and the
    # engine's 65,536 conversations) is full well before the second half of the flood.
    cfg = parse_config(
        {"home_networks": ["10.0.0.0/8"], "detectors": {"portscan": {"max_tracked": 20_000}}}
    )
    engine = Engine(cfg.build_detectors(), AlertSink(None, 300.0, 1e9))
    detector = next(d for d in engine.detectors if d.name == "flood")
    rng = random.Random(9)
    marks = []
    tracemalloc.start()
    for step in range(30):  # 30 x 5,000 packets from 150,000 random sources, 1.5 s at 100k pps
        frames = [udp(spoofed(rng), addr(VICTIM), 123, 80, 400) for _ in range(5_000)]
        engine.process_batch(
            [(1000 + (step * 5_000 + i) / 1e5, f, len(f)) for i, f in enumerate(frames)]
        )
        del frames
        if step in (19, 29):  # every table is at its cap by the first mark
            marks.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert detector.tracked == 1
    victim = detector.table.get(addr(VICTIM))
    assert victim is not None and 110_000 <= victim.sources.count() <= 190_000
    assert marks[1] - marks[0] < 2 * 2**20  # tables at their caps: flat
