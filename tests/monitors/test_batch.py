"""The batch path (monitors.batch: header fields read as arrays, plain TCP segments counted
without becoming packets) gives exactly what the packet-by-packet path gives: the same
alerts, in the same order, with the same evidence, and the same counters. Real captures,
the benchmark's mixed capture, and random frames built to hit the edges (handshakes split
across batches, VLAN tags, IP options, tunnels, DNS over TCP, truncated frames)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, GRE, IP, TCP, UDP, VXLAN, Dot1Q, IPv6, Raw  # type: ignore[attr-defined]

from monitors.alerts import Alert, AlertSink
from monitors.batch import Columns, FrameBatch
from monitors.capture import CaptureError, read_file
from monitors.config import parse_config
from monitors.engine import Engine
from tests.monitors.craft import LAB_HOME, eth

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "tests" / "data" / "pcaps"
Frame = tuple[float, bytes, int]


def outcome(batches: list[list[Frame]], columnar: bool) -> tuple[list[dict[str, Any]], dict]:
    """Alerts (as EVE records) and counters of one engine over the batches."""
    cfg = parse_config({"home_networks": LAB_HOME})
    written: list[Alert] = []
    engine = Engine(
        cfg.build_detectors(), AlertSink(None, 300.0, 1e9, on_write=written.append), columnar
    )
    for batch in batches:
        engine.process_batch(batch)
    stats = engine.stats
    counters = {
        name: {k: v for k, v in table.items() if v}
        for name, table in (
            ("packets", stats.packets),
            ("bytes", stats.bytes),
            ("malformed", stats.malformed),
            ("alerts", stats.alerts),
        )
    }
    counters["state"] = {
        detector.name: snapshot(detector.table.data) for detector in engine.detectors
    }
    return [alert.eve() for alert in written], counters


def snapshot(table: dict[Any, Any]) -> dict[Any, Any]:
    """A detector's state, comparable: every field of every entry (for the SYN-flood
    detector: SYNs, completed handshakes and pending bits per service)."""
    return {key: plain(value) for key, value in table.items()}


def plain(value: Any) -> Any:
    slots = getattr(type(value), "__slots__", None)
    if slots is not None:
        return tuple(plain(getattr(value, name, None)) for name in slots)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if hasattr(value, "__dict__"):
        return plain(vars(value))
    return value


def assert_same(batches: list[list[Frame]]) -> tuple[list[dict[str, Any]], dict]:
    fast = outcome(batches, columnar=True)
    reference = outcome(batches, columnar=False)
    assert fast[1] == reference[1]
    assert fast[0] == reference[0]
    return fast


def file_batches(path: Path) -> list[list[Frame]]:
    return [list(batch) for batch in read_file(path)]


def test_every_capture_gives_the_same_alerts_and_counters() -> None:
    alerts = 0
    for pcap in sorted(PCAPS.glob("*.pcap")):
        found, counters = assert_same(file_batches(pcap))
        alerts += len(found)
        assert counters["packets"], pcap
    assert alerts >= 8  # the attack captures do raise alerts: the comparison means something


def test_the_benchmark_capture_gives_the_same_alerts(tmp_path: Path) -> None:
    pcap = tmp_path / "bench.pcap"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "make_pcap.py"),
            str(pcap),
            "--packets",
            "150000",
        ],
        check=True,
    )
    alerts, counters = assert_same(file_batches(pcap))
    assert {a["alert"]["signature_id"] for a in alerts} >= {9100001, 9100006}
    assert counters["packets"]["TCP"] > 100_000


def test_plain_segments_do_not_become_packets(tmp_path: Path) -> None:
    """The point of the batch path: an established internal connection's segments reach no
    detector (the volume detector only wants traffic leaving home, the SYN-flood detector
    only the ACK that completes a handshake)."""
    cfg = parse_config({"home_networks": LAB_HOME})
    detectors = cfg.build_detectors()
    seen: list[tuple[int, float]] = []
    for detector in detectors:
        original = detector.observe

        def counted(pkt: Any, emit: Any, original: Any = original) -> None:
            seen.append((pkt.tcp_flags, pkt.ts))
            original(pkt, emit)

        detector.observe = counted  # type: ignore[method-assign]
    engine = Engine(detectors, AlertSink(None, 300.0, 1e9))
    client, server = "10.1.0.5", "10.2.0.9"
    packets = [eth() / IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="S")]
    packets.append(eth() / IP(src=server, dst=client) / TCP(sport=443, dport=40000, flags="SA"))
    packets.append(eth() / IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="A"))
    for _ in range(500):
        packets.append(
            eth()
            / IP(src=client, dst=server)
            / TCP(sport=40000, dport=443, flags="PA")
            / Raw(b"x" * 100)
        )
        packets.append(eth() / IP(src=server, dst=client) / TCP(sport=443, dport=40000, flags="A"))
    engine.process_batch([(1.0 + i / 1000, bytes(p), len(p)) for i, p in enumerate(packets)])
    assert engine.stats.packets["TCP"] == 1003
    # The SYN and SYN-ACK (every handshake detector), the handshake's ACK: nothing else.
    assert {flags for flags, _ in seen} == {0x02, 0x12, 0x10}
    assert {ts for flags, ts in seen if flags == 0x10} == {1.002}


# ---- random frames ------------------------------------------------------------------------

HOSTS = ["10.1.0.5", "10.1.0.6", "10.2.0.9", "192.0.2.7"]
PORTS = [53, 80, 443, 40000, 40001, 4789]
FLAGS = ["S", "SA", "A", "PA", "FA", "R", "RA", "", "SF"]


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    src, dst = draw(st.sampled_from(HOSTS)), draw(st.sampled_from(HOSTS))
    sport, dport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
    kind = draw(st.sampled_from(["tcp", "tcp", "tcp", "udp", "v6", "options", "gre", "vxlan"]))
    flags = draw(st.sampled_from(FLAGS))
    payload = Raw(b"p" * draw(st.sampled_from([0, 0, 1, 40])))
    if draw(st.integers(0, 4)) == 0:  # a DNS query, as it goes over TCP (length first)
        label = draw(st.sampled_from(["www", "aGVsbG8gd29ybGQgZnJvbSBrYXN0cm8", "mail"]))
        query = bytes(DNS(id=7, qd=DNSQR(qname=f"{label}.example.gr", qtype="TXT")))
        payload = Raw(len(query).to_bytes(2, "big") + query)
    segment = TCP(sport=sport, dport=dport, flags=flags) / payload
    if kind == "udp":
        packet = IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
    elif kind == "v6":
        packet = IPv6(src="fd00::1", dst="fd00::2") / segment
    elif kind == "options":
        packet = IP(src=src, dst=dst, options=b"\x01\x01\x01\x00") / segment
    elif kind == "gre":
        packet = IP(src=src, dst=dst) / GRE() / IP(src=dst, dst=src) / segment
    elif kind == "vxlan":
        inner = eth() / IP(src=dst, dst=src) / segment
        packet = IP(src=src, dst=dst) / UDP(sport=50000, dport=4789) / VXLAN(vni=7) / inner
    else:
        packet = IP(src=src, dst=dst) / segment
    tags = draw(st.sampled_from([0, 0, 0, 1, 2]))
    link = eth()  # explicit MACs: scapy would otherwise ask the network for them
    for _ in range(tags):
        link = link / Dot1Q(vlan=10)
    data = bytes(link / packet)
    if draw(st.booleans()):
        data += bytes(draw(st.sampled_from([0, 6])))  # Ethernet padding
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # truncated by the capture
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(frame(), min_size=1, max_size=80),
    st.lists(st.integers(1, 40), min_size=1, max_size=10),
)
def test_random_frames_give_the_same_alerts_and_counters(
    frames: list[bytes], cuts: list[int]
) -> None:
    rows = [(1000.0 + i * 0.001, data, len(data)) for i, data in enumerate(frames)]
    batches, start = [], 0
    for size in cuts * (len(rows) // len(cuts) + 1):
        if start >= len(rows):
            break
        batches.append(rows[start : start + size])
        start += size
    assert_same(batches)


def test_columns_read_what_the_parser_reads() -> None:
    """A tagged segment with data: the arrays' fields are the parser's."""
    data = bytes(
        eth()
        / Dot1Q(vlan=5)
        / IP(src="10.1.0.5", dst="10.2.0.9")
        / TCP(sport=40000, dport=443, flags="PA")
        / Raw(b"hello")
    )
    cols = Columns(FrameBatch.from_frames([(1.0, data, len(data))]))
    assert cols.fast.tolist() == [True] and cols.ack.tolist() == [False]
    assert cols.sport.tolist() == [40000] and cols.dport.tolist() == [443]
    assert cols.src.tolist() == [0x0A010005] and cols.dst.tolist() == [0x0A020009]
    assert cols.payload_offset.tolist() == [len(data) - 5]
    assert not cols.unsure.any()


def test_a_record_claiming_a_huge_length_is_a_corrupt_file(tmp_path: Path) -> None:
    """A record header saying 300,000 bytes: a clean error naming the file, wherever the
    record falls (first, or after good ones), never a silent end of the capture."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    good = bytes(eth() / IP(src="10.1.0.5", dst="10.2.0.9") / TCP(flags="S"))
    record = struct.pack("<IIII", 1, 0, len(good), len(good)) + good
    bad = struct.pack("<IIII", 1, 0, 300_000, 300_000) + good
    for body in (bad, record * 3 + bad, record * 3 + bad + record):
        pcap = tmp_path / "corrupt.pcap"
        pcap.write_bytes(header + body)
        with pytest.raises(CaptureError, match="corrupt record"):
            for _ in read_file(pcap):
                pass
