"""The same traffic captured on any link type gives the same alerts.

Each real-tool capture (tests/data/pcaps, Ethernet) is rewritten here into every link type the
monitors read, as pcap and as pcapng, with link headers built by this test on its own (not by
monitors.linktypes), then read back through `read_file`. The alerts must be the ones the
Ethernet capture gives. Links without an Ethernet-like header cannot carry ARP, so for those
the Ethernet baseline is the IP traffic alone.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from monitors.alerts import AlertSink, ip_text
from monitors.capture import CaptureError, read_file
from monitors.config import MonitorConfig
from monitors.engine import Engine

PCAPS = Path(__file__).resolve().parents[1] / "data" / "pcaps"
CAPTURES = [
    "nmap-syn-scan.pcap",
    "nmap-udp-scan.pcap",
    "nmap-ping-sweep.pcap",
    "hping3-syn-flood.pcap",
    "ssh-bruteforce.pcap",
    "iodine-tunnel.pcap",
    "arpspoof.pcap",
    "normal.pcap",
]
IPV4, IPV6 = 0x0800, 0x86DD
# Attacks seen through ARP (nmap's sweep of its own LAN asks by ARP): nothing to see on links
# that carry IP alone.
BY_ARP = {"nmap-ping-sweep.pcap", "arpspoof.pcap"}
ARP_LINKS = {113, 276, 104}


def link_frame(linktype: int, frame: bytes) -> bytes | None:
    """`frame` (Ethernet) as a frame of `linktype`; None if that link cannot carry it."""
    src, kind, l3 = frame[6:12], struct.unpack_from("!H", frame, 12)[0], frame[14:]
    ip = kind in (IPV4, IPV6)
    family_bsd = 2 if kind == IPV4 else 24
    encoders = {
        0: lambda: struct.pack("<I", 2 if kind == IPV4 else 30) + l3,  # macOS-style AF_INET6
        108: lambda: struct.pack(">I", family_bsd) + l3,
        101: lambda: l3,
        12: lambda: l3,
        14: lambda: l3,
        228: lambda: l3 if kind == IPV4 else None,
        229: lambda: l3 if kind == IPV6 else None,
        113: lambda: struct.pack("!HHH8sH", 0, 1, 6, src + bytes(2), kind) + l3,
        276: lambda: struct.pack("!HHIHBB8s", kind, 0, 2, 1, 0, 6, src + bytes(2)) + l3,
        9: lambda: struct.pack("!H", 0x21 if kind == IPV4 else 0x57) + l3,
        50: lambda: b"\xff\x03" + struct.pack("!H", 0x21 if kind == IPV4 else 0x57) + l3,
        104: lambda: struct.pack("!BBH", 0x0F, 0, kind) + l3,
    }
    if linktype in ARP_LINKS:
        return encoders[linktype]()
    return encoders[linktype]() if ip else None


def keeps(linktype: int, frame: bytes) -> bool:
    kind = struct.unpack_from("!H", frame, 12)[0]
    if linktype in ARP_LINKS:
        return True
    if linktype == 228:
        return kind == IPV4
    if linktype == 229:
        return kind == IPV6
    return kind in (IPV4, IPV6)


def write_pcap(path: Path, linktype: int, frames: list[tuple[float, bytes, int]]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame, wirelen in frames:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), wirelen) + frame)
    path.write_bytes(b"".join(out))


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def write_pcapng(path: Path, linktype: int, frames: list[tuple[float, bytes, int]]) -> None:
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out.append(_block(1, struct.pack("<HHI", linktype, 0, 65535)))
    for ts, frame, wirelen in frames:
        stamp = round(ts * 1e6)
        head = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), wirelen)
        out.append(_block(6, head + frame))
    path.write_bytes(b"".join(out))


def alerts(frames: list[tuple[float, bytes, int]]) -> set[tuple[int, str, str]]:
    written: list = []
    engine = Engine(
        MonitorConfig().build_detectors(),
        AlertSink(None, max_per_second=1e9, on_write=written.append),
    )
    for start in range(0, len(frames), 512):
        engine.process_batch(frames[start : start + 512])
    return {(a.signature_id, ip_text(a.src), ip_text(a.dst)) for a in written}


def frames_of(path: Path) -> list[tuple[float, bytes, int]]:
    return [frame for batch in read_file(path) for frame in batch]


@pytest.fixture(scope="module")
def ethernet() -> dict[str, list[tuple[float, bytes, int]]]:
    return {name: frames_of(PCAPS / name) for name in CAPTURES}


LINKTYPES = [0, 108, 101, 12, 14, 228, 229, 113, 276, 9, 50, 104]


@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_every_link_type_gives_the_ethernet_alerts(ethernet, tmp_path, linktype, container):
    writer = write_pcap if container == "pcap" else write_pcapng
    for name, frames in ethernet.items():
        kept = [f for f in frames if keeps(linktype, f[1])]
        if not kept:
            continue
        baseline = alerts(kept)
        encoded = []
        for ts, frame, wirelen in kept:
            linked = link_frame(linktype, frame)
            assert linked is not None
            encoded.append((ts, linked, wirelen - len(frame) + len(linked)))
        path = tmp_path / f"{name}.{linktype}.{container}"
        writer(path, linktype, encoded)
        assert alerts(frames_of(path)) == baseline, f"{name} as link type {linktype}"
        attack = name != "normal.pcap" and linktype not in (228, 229)
        if attack and (name not in BY_ARP or linktype in ARP_LINKS):
            assert baseline, f"{name}: the baseline itself raised nothing"


def test_an_unsupported_link_type_is_a_clear_error(tmp_path):
    path = tmp_path / "bluetooth.pcap"
    write_pcap(path, 187, [(1.0, b"\x00" * 20, 20)])
    with pytest.raises(CaptureError, match=r"link type 187 is not supported; supported: 0 \(BSD"):
        frames_of(path)
    path = tmp_path / "bluetooth.pcapng"
    write_pcapng(path, 187, [(1.0, b"\x00" * 20, 20)])
    with pytest.raises(CaptureError, match="link type 187 is not supported"):
        frames_of(path)


@pytest.mark.parametrize("linktype", LINKTYPES)
def test_frames_shorter_than_their_link_header_are_counted_not_fatal(tmp_path, linktype):
    path = tmp_path / "short.pcap"
    write_pcap(path, linktype, [(1.0, b"\xff" * n, n) for n in range(0, 24)])
    engine = Engine(MonitorConfig().build_detectors(), AlertSink(None, max_per_second=1e9))
    for batch in read_file(path):
        engine.process_batch(batch)


def crafted() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
    from scapy.layers.l2 import ARP, Ether

    eth = Ether(src="02:00:00:00:00:66", dst="02:00:00:00:00:10")
    packets = [
        eth / IP(src="10.1.0.66", dst="10.1.0.10") / TCP(sport=40000, dport=22, flags="S"),
        eth / IP(src="10.1.0.66", dst="10.1.0.10") / UDP(sport=53, dport=33000) / (b"x" * 30),
        eth / IP(src="10.1.0.66", dst="10.1.0.10") / ICMP(type=8),
        eth / IPv6(src="fd00::66", dst="fd00::10") / TCP(sport=40000, dport=443, flags="SA"),
        eth / IPv6(src="fd00::66", dst="fd00::10") / IPv6ExtHdrFragment(offset=10) / (b"y" * 16),
        eth / ARP(op=2, psrc="10.1.0.1", hwsrc="02:00:00:00:00:66", pdst="10.1.0.10"),
    ]
    return [bytes(p) for p in packets]


@pytest.mark.parametrize("linktype", LINKTYPES)
def test_each_packet_parses_to_the_same_fields_on_every_link(tmp_path, linktype):
    from monitors.packet import parse

    frames = [f for f in crafted() if keeps(linktype, f)]
    encoded = []
    for frame in frames:
        linked = link_frame(linktype, frame)
        assert linked is not None
        encoded.append((1.0, linked, len(linked)))
    path = tmp_path / "crafted.pcap"
    write_pcap(path, linktype, encoded)
    back = frames_of(path)
    assert len(back) == len(frames)
    fields = ("ethertype", "src", "dst", "proto", "sport", "dport", "tcp_flags", "fragment")
    for original, (_, frame, wirelen) in zip(frames, back, strict=True):
        want, got = parse(original, 1.0), parse(frame, 1.0, wirelen)
        assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]
        if want.proto and not want.fragment:  # IP with a transport header
            assert got.payload == want.payload
        assert wirelen == len(original)  # the volume detectors count the same bytes
        if linktype in (113, 276):
            assert got.src_mac == want.src_mac
