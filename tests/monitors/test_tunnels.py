"""#15: tunnels Suricata decodes by default (VXLAN, GRE, Teredo) are opened by the monitor.

A port scan wrapped in each tunnel gives the same alert, naming the inner addresses, as the
bare scan; the tunnel packets themselves are still inspected (a flood of them toward one
address is a flood); a tunnel whose content does not parse leaves the outer packet alone.
"""

import pytest
from scapy.layers.inet import GRE
from scapy.layers.vxlan import VXLAN

from monitors.alerts import ip_text
from monitors.packet import PROTO_TCP, PROTO_UDP, parse
from tests.monitors.craft import IP, TCP, UDP, IPv6, Raw, eth, run, sids

ATTACKER, VICTIM = "10.9.0.66", "10.9.0.10"
VTEP_A, VTEP_B = "192.0.2.1", "192.0.2.2"


def inner_syn(i: int):
    return IP(src=ATTACKER, dst=VICTIM) / TCP(sport=40000 + i, dport=1000 + i, flags="S")


def inner_syn6(i: int):
    return IPv6(src="fd00::66", dst="fd00::10") / TCP(sport=40000 + i, dport=1000 + i, flags="S")


WRAPS = {
    "bare": lambda i: eth() / inner_syn(i),
    "vxlan": lambda i: eth() / IP(src=VTEP_A, dst=VTEP_B) / UDP(sport=50000, dport=4789)
    / VXLAN(vni=42) / eth() / inner_syn(i),
    "gre-ip": lambda i: eth() / IP(src=VTEP_A, dst=VTEP_B) / GRE() / inner_syn(i),
    "gre-key-seq-ethernet": lambda i: eth() / IP(src=VTEP_A, dst=VTEP_B)
    / GRE(proto=0x6558, key_present=1, key=7, seqnum_present=1, seqence_number=i)
    / eth() / inner_syn(i),
    "vxlan-in-gre": lambda i: eth() / IP(src=VTEP_A, dst=VTEP_B) / GRE()
    / IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=50001, dport=4789)
    / VXLAN(vni=7) / eth() / inner_syn(i),
}  # fmt: skip


@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_a_scan_in_a_tunnel_is_the_same_scan(wrap):
    alerts = run([(1000 + i * 0.01, WRAPS[wrap](i)) for i in range(40)])
    assert 9100001 in sids(alerts), wrap
    scan = next(a for a in alerts if a.signature_id == 9100001)
    assert (ip_text(scan.src), ip_text(scan.dst)) == (ATTACKER, VICTIM)


def test_teredo_carries_ipv6_to_the_detectors():
    def teredo(i: int):
        return eth() / IP(src=VTEP_A, dst=VTEP_B) / UDP(sport=3544, dport=51000) / inner_syn6(i)

    pkt = parse(bytes(teredo(0)), 1.0)
    assert pkt.proto == PROTO_UDP and pkt.inner is not None
    assert pkt.inner.proto == PROTO_TCP and pkt.inner.dport == 1000
    alerts = run([(1000 + i * 0.01, teredo(i)) for i in range(40)])
    scan = next(a for a in alerts if a.signature_id == 9100001)
    assert ip_text(scan.src) == "fd00::66"


def test_the_tunnel_packet_itself_is_still_inspected():
    pkt = parse(bytes(WRAPS["vxlan"](0)), 1.0)
    assert (ip_text(pkt.src), pkt.proto, pkt.dport) == (VTEP_A, PROTO_UDP, 4789)
    assert pkt.inner is not None and ip_text(pkt.inner.dst) == VICTIM
    assert pkt.inner.length == len(bytes(WRAPS["vxlan"](0))) - 50  # outer Ethernet+IP+UDP+VXLAN


@pytest.mark.parametrize(
    "content",
    [b"", b"\x08", b"\x08\x00\x00\x00\x00\x00\x2a\x00" + b"\x00" * 5, b"\x00" * 8 + b"\xff" * 60],
)
def test_a_tunnel_whose_content_does_not_parse_leaves_the_outer_packet(content):
    frame = bytes(eth() / IP(src=VTEP_A, dst=VTEP_B) / UDP(sport=50000, dport=4789) / Raw(content))
    pkt = parse(frame, 1.0)
    assert pkt.proto == PROTO_UDP and pkt.dport == 4789
    assert pkt.inner is None or pkt.inner.ethertype not in (0x0800, 0x86DD)


def test_gre_nesting_stops_at_two_levels():
    frame = eth() / IP(src=VTEP_A, dst=VTEP_B) / GRE()
    for _ in range(5):
        frame = frame / IP(src=VTEP_A, dst=VTEP_B) / GRE()
    pkt = parse(bytes(frame / inner_syn(0)), 1.0)
    depth = 0
    while pkt.inner is not None:
        pkt, depth = pkt.inner, depth + 1
    assert depth == 2
