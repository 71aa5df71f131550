"""Each detector with crafted packets at the edges of its thresholds (scapy)."""

import ipaddress

import pytest

from monitors.alerts import ip_text
from tests.monitors.craft import (
    ARP,
    BOOTP,
    DHCP,
    DNS,
    DNSQR,
    ICMP,
    IP,
    TCP,
    UDP,
    IPv6,
    eth,
    run,
    sids,
)

ATTACKER, VICTIM = "10.9.0.66", "10.9.0.10"


def syn(i, dst=VICTIM, dport=80, src=ATTACKER, sport=40000, flags="S", ts=None):
    return (
        ts if ts is not None else 1000 + i * 0.01,
        eth() / IP(src=src, dst=dst) / TCP(sport=sport + i % 20000, dport=dport, flags=flags),
    )


# ---- port scans -----------------------------------------------------------------------------


@pytest.mark.parametrize(("ports", "alerted"), [(17, False), (26, True)])
def test_vertical_scan_threshold(ports, alerted):
    alerts = run([syn(i, dport=1000 + i) for i in range(ports)])
    assert (9100001 in sids(alerts)) is alerted
    if alerted:
        alert = next(a for a in alerts if a.signature_id == 9100001)
        assert ip_text(alert.src) == ATTACKER and ip_text(alert.dst) == VICTIM


@pytest.mark.parametrize(("hosts", "alerted"), [(15, False), (30, True)])
def test_horizontal_scan_threshold(hosts, alerted):
    alerts = run([syn(i, dst=f"10.9.1.{i + 1}", dport=445) for i in range(hosts)])
    assert (9100002 in sids(alerts)) is alerted


def test_horizontal_contacts_that_succeed_are_not_a_scan():
    packets = []
    for i in range(40):  # a busy client: 40 servers, every connection answered
        dst = f"10.9.1.{i + 1}"
        packets.append(syn(2 * i, dst=dst, dport=443))
        packets.append(
            (
                1000 + 2 * i * 0.01 + 0.005,
                eth() / IP(src=dst, dst=ATTACKER) / TCP(sport=443, dport=40000 + 2 * i, flags="SA"),
            )
        )
    assert run(packets) == []


@pytest.mark.parametrize(("flags", "name"), [("", "NULL"), ("F", "FIN"), ("FPU", "Xmas")])
def test_stealth_scans(flags, name):
    alerts = run([syn(i, dport=2000 + i, flags=flags) for i in range(4)])
    assert alerts == []
    alerts = run([syn(i, dport=2000 + i, flags=flags) for i in range(5)])
    assert sids(alerts) == [9100003]
    assert name in alerts[0].signature


def test_udp_scan():
    packets = [
        (1000 + i * 0.01, eth() / IP(src=ATTACKER, dst=VICTIM) / UDP(sport=5555, dport=1000 + i))
        for i in range(30)
    ]
    assert sids(run(packets)) == [9100004]


# ---- SYN flood ------------------------------------------------------------------------------


def test_spoofed_syn_flood_is_one_alert():
    packets = [
        syn(i, src=str(ipaddress.IPv4Address("10.100.0.0") + i), dport=80, ts=1000 + i * 0.002)
        for i in range(400)
    ]
    alerts = [a for a in run(packets) if a.detector == "synflood"]
    assert [a.signature_id for a in alerts] == [9100006]
    assert ip_text(alerts[0].dst) == VICTIM and alerts[0].dport == 80
    assert alerts[0].evidence["half_open_ratio"] == 1.0


def test_syn_burst_that_completes_is_not_a_flood():
    packets = []
    for i in range(400):
        src = f"10.8.{i // 200}.{i % 200 + 1}"
        packets.append(syn(i, src=src, ts=1000 + i * 0.002))
        packets.append(
            (
                1000 + i * 0.002 + 0.001,
                eth() / IP(src=src, dst=VICTIM) / TCP(sport=40000 + i % 20000, dport=80, flags="A"),
            )
        )
    assert [a for a in run(packets) if a.detector == "synflood"] == []


def test_syn_rate_below_threshold_is_not_a_flood():
    packets = [
        syn(i, src=f"10.100.{i // 250}.{i % 250 + 1}", ts=1000 + i * 0.02) for i in range(150)
    ]
    assert [a for a in run(packets) if a.detector == "synflood"] == []


# ---- sweeps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("targets", "alerted"), [(15, False), (30, True)])
def test_icmp_sweep(targets, alerted):
    packets = [
        (1000 + i * 0.01, eth() / IP(src=ATTACKER, dst=f"10.9.2.{i + 1}") / ICMP())
        for i in range(targets)
    ]
    assert (9100011 in sids(run(packets))) is alerted


def test_icmpv6_sweep():
    packets = [
        (
            1000 + i * 0.01,
            eth() / IPv6(src="fd00::66", dst=f"fd00::{i + 1:x}") / ICMPv6EchoRequest(),
        )
        for i in range(30)
    ]
    assert 9100011 in sids(run(packets))


def test_arp_sweep():
    packets = [
        (
            1000 + i * 0.01,
            eth(dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc="02:00:00:00:00:66", psrc=ATTACKER, pdst=f"10.9.0.{i + 1}"),
        )
        for i in range(30)
    ]
    assert 9100012 in sids(run(packets))


# ---- ARP spoofing and rogue DHCP -----------------------------------------------------------

GATEWAY = "10.9.0.1"


def arp_reply(ts, mac, ip=GATEWAY):
    return (ts, eth(src=mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=VICTIM, pdst=VICTIM))


def test_arp_binding_change_is_reported_once_with_both_macs():
    packets = [arp_reply(1000, "02:00:00:00:00:aa"), arp_reply(1001, "02:00:00:00:00:aa")]
    packets += [
        arp_reply(1002 + i, "02:00:00:00:00:66") for i in range(5)
    ]  # arpspoof repeats its lie
    alerts = run(packets)
    assert [a.signature_id for a in alerts] == [9100021]
    assert alerts[0].evidence["claimed_ip_mac_old"] == "02:00:00:00:00:aa"
    assert alerts[0].evidence["claimed_ip_mac_new"] == "02:00:00:00:00:66"
    assert ip_text(alerts[0].src) == GATEWAY


def test_same_binding_repeated_is_normal():
    assert run([arp_reply(1000 + i, "02:00:00:00:00:aa") for i in range(20)]) == []


def test_gratuitous_arp_storm():
    mac = "02:00:00:00:00:bb"
    packets = [
        (
            1000 + i * 0.1,
            eth(src=mac, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=mac, psrc="10.9.0.50", pdst="10.9.0.50"),
        )
        for i in range(11)
    ]
    assert sids(run(packets)) == [9100022]
    assert run(packets[:10]) == []


def dhcp_offer(ts, server, mac):
    return (
        ts,
        eth(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src=server, dst="255.255.255.255")
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, yiaddr="10.9.0.77", siaddr=server)
        / DHCP(options=[("message-type", "offer"), ("server_id", server), "end"]),
    )


def test_rogue_dhcp_server_against_a_configured_list():
    config = {"detectors": {"arpspoof": {"dhcp_servers": ["10.9.0.1"]}}}
    assert run([dhcp_offer(1000, "10.9.0.1", "02:00:00:00:00:aa")], config) == []
    alerts = run([dhcp_offer(1000, "10.9.0.66", "02:00:00:00:00:66")], config)
    assert sids(alerts) == [9100023]
    assert alerts[0].evidence["offered_address"] == "10.9.0.77"


def test_second_dhcp_server_without_a_list():
    alerts = run(
        [
            dhcp_offer(1000, "10.9.0.1", "02:00:00:00:00:aa"),
            dhcp_offer(1001, "10.9.0.66", "02:00:00:00:00:66"),
        ]
    )
    assert sids(alerts) == [9100023] and ip_text(alerts[0].src) == "10.9.0.66"


def dhcp_discover(ts, mac, kind="discover"):
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    return (
        ts,
        eth(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(op=1, chaddr=chaddr, xid=1)
        / DHCP(options=[("message-type", kind), "end"]),
    )


def random_mac(rng) -> str:
    return "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))


def test_dhcp_starvation_with_random_client_macs():
    import random

    rng = random.Random(4)
    flood = [dhcp_discover(1000 + i * 0.01, random_mac(rng)) for i in range(300)]
    alerts = run(flood)
    assert sids(alerts) == [9100024] and len(alerts) == 1
    assert alerts[0].evidence["distinct_client_macs"] >= 100
    assert alerts[0].ts - 1000 < 2.0  # within about a hundred requests


def test_a_building_renewing_its_leases_is_not_starvation():
    """80 PCs asking for their leases within 10 s (a morning), each twice, then REQUESTs."""
    import random

    rng = random.Random(5)
    macs = [random_mac(rng) for _ in range(80)]
    packets = [dhcp_discover(1000 + i * 0.1, m) for i, m in enumerate(macs)]
    packets += [dhcp_discover(1000 + i * 0.1 + 0.05, m, "request") for i, m in enumerate(macs)]
    packets += [dhcp_discover(1020 + i * 0.1, m, "request") for i, m in enumerate(macs)]
    assert run(sorted(packets, key=lambda p: p[0])) == []


def test_ecn_syns_of_a_linux_client_are_not_fingerprinting():
    """tcp_ecn=1: every SYN has ECE and CWR; with ordinary timestamps it is a normal client."""
    packets = [
        (1000 + i * 0.1, eth() / IP(src=VICTIM, dst=f"10.9.1.{i + 1}")
         / TCP(sport=40000 + i, dport=443, flags="SEC", options=[("Timestamp", (12345 + i, 0))]))
        for i in range(30)
    ]  # fmt: skip
    assert 9100007 not in sids(run(packets))  # (30 unanswered SYNs are a horizontal scan)


# ---- DNS tunnels ----------------------------------------------------------------------------


def dns_query(ts, name, qtype="A", client=VICTIM):
    return (
        ts,
        eth()
        / IP(src=client, dst="10.9.0.53")
        / UDP(sport=33333, dport=53)
        / DNS(rd=1, qd=DNSQR(qname=name, qtype=qtype)),
    )


def test_dns_tunnel_with_long_random_labels():
    import base64
    import random

    rng = random.Random(7)
    names = [
        base64.b32encode(rng.randbytes(35)).decode().rstrip("=").lower() + ".t.evil.example"
        for _ in range(25)
    ]
    alerts = run([dns_query(1000 + i, n, "NULL") for i, n in enumerate(names)])
    assert sids(alerts) == [9100031]
    assert alerts[0].evidence["domain"] == "evil.example"


def test_normal_browsing_dns_is_quiet():
    names = [
        "www.example.org",
        "mail.example.org",
        "cdn.example.net",
        "www.gov.gr",
        "ntua.gr",
        "static.example.org",
        "api.example.net",
        "www.kastro.example.gr",
    ] * 10
    assert run([dns_query(1000 + i, n) for i, n in enumerate(names)]) == []


def test_nxdomain_storm():
    packets = [
        (
            1000 + i * 0.1,
            eth()
            / IP(src="10.9.0.53", dst=VICTIM)
            / UDP(sport=53, dport=33333)
            / DNS(qr=1, rcode=3, qd=DNSQR(qname=f"x{i}q.example")),
        )
        for i in range(50)
    ]
    assert sids(run(packets)) == [9100032]
    assert run(packets[:49]) == []


# ---- brute force ----------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "alerted"), [(9, False), (10, True)])
def test_ssh_brute_force(attempts, alerted):
    alerts = run([syn(i * 100, dport=22, ts=1000 + i) for i in range(attempts)])
    assert (9100041 in sids(alerts)) is alerted
    if alerted:
        assert "SSH" in next(a for a in alerts if a.signature_id == 9100041).signature


def test_web_login_ports_are_a_setting_that_works():
    """docs/monitors.md's example, `bruteforce: {web_login_ports: [443]}`, was refused by the
    config parser (lists held strings only); ports are now read as ports."""
    attempts = [syn(i * 100, dport=443, ts=1000 + i) for i in range(10)]
    assert 9100041 not in sids(run(attempts))
    config = {"detectors": {"bruteforce": {"web_login_ports": [443]}}}
    assert 9100041 in sids(run(attempts, config))


def test_a_port_setting_must_hold_ports():
    from monitors.config import parse_config
    from monitors.detectors.base import ConfigError

    for bad in (["443"], [70000], [True]):
        with pytest.raises(ConfigError, match="web_login_ports"):
            parse_config({"detectors": {"bruteforce": {"web_login_ports": bad}}})


def test_the_configuration_example_in_the_docs_is_valid():
    import re
    from pathlib import Path

    import yaml

    from monitors.config import parse_config

    text = (Path(__file__).resolve().parents[2] / "docs" / "monitors.md").read_text()
    section = text[text.index("## Configuration") :]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    parse_config(yaml.safe_load(example.group(1)))


def test_rdp_brute_force_spread_over_more_than_the_window_is_quiet():
    assert run([syn(i * 100, dport=3389, ts=1000 + i * 10) for i in range(12)]) == []


# ---- volume ---------------------------------------------------------------------------------


def test_exfiltration_after_a_quiet_baseline():
    config = {"detectors": {"volume": {"min_bytes": 100_000, "interval_seconds": 10}}}
    packets = []
    for second in range(80):  # 80 s of ~1 kB/s to the internet
        packets.append(
            (
                1000 + second,
                eth()
                / IP(src=VICTIM, dst="198.51.100.7")
                / TCP(sport=5000, dport=443, flags="PA")
                / ("x" * 1000),
            )
        )
    quiet = run(packets, config)
    assert quiet == []
    for i in range(200):  # then 200 x 1.4 kB in one second
        packets.append(
            (
                1081 + i * 0.005,
                eth()
                / IP(src=VICTIM, dst="198.51.100.7")
                / TCP(sport=5000, dport=443, flags="PA")
                / ("y" * 1400),
            )
        )
    alerts = run(packets, config)
    assert sids(alerts) == [9100051]
    assert ip_text(alerts[0].src) == VICTIM


def test_internal_traffic_never_counts_as_exfiltration():
    config = {
        "detectors": {
            "volume": {"min_bytes": 10_000, "interval_seconds": 10, "warmup_intervals": 1}
        }
    }
    packets = [
        (
            1000 + i * 0.05,
            eth()
            / IP(src=VICTIM, dst="10.9.0.20")
            / TCP(sport=5000, dport=445, flags="PA")
            / ("z" * 1400),
        )
        for i in range(1000)
    ]
    assert run(packets, config) == []


# ---- beaconing ------------------------------------------------------------------------------


def beacon(intervals, start=1000.0):
    ts = start
    packets = []
    for i, gap in enumerate([0, *intervals]):
        ts += gap
        packets.append(
            (
                ts,
                eth()
                / IP(src=VICTIM, dst="203.0.113.9")
                / TCP(sport=50000 + i, dport=8443, flags="S"),
            )
        )
    return packets


def test_regular_beacon_is_reported():
    alerts = run(beacon([30.0, 30.2, 29.9, 30.1, 30.0, 29.8, 30.3, 30.0]))
    assert sids(alerts) == [9100061]
    assert alerts[0].evidence["mean_interval_seconds"] == pytest.approx(30.04, abs=0.05)


def test_irregular_connections_are_not_a_beacon():
    assert run(beacon([5, 61, 12, 240, 33, 7, 90, 18, 45])) == []


def test_too_few_connections_are_not_judged():
    assert run(beacon([30.0] * 7)) == []


from scapy.layers.inet6 import ICMPv6EchoRequest  # noqa: E402  (scapy's own module)
