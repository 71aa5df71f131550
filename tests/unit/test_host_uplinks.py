"""kastro-uplinks' decisions (kastro.host.uplinks): the configuration's checks, the policy rules,
the hold-down against flapping, the ICMP it sends and reads. The routes, rules and probes
themselves run on real routers in molecule/links-internet (test_uplinks.py)."""

import socket
import struct

import pytest

from kastro.host import uplinks as u

RAW = {
    "uplinks": [
        {"name": "isp", "interface": "wan", "table": 101, "mark": 0x4B01,
         "addresses": ["198.51.100.2/24", "198.51.100.3/32"], "probe": ["192.0.2.53"],
         "gateway_ipv4": "198.51.100.1", "network_ipv4": "198.51.100.0/24",
         "gateway_ipv6": "", "network_ipv6": ""},
        {"name": "isp2", "interface": "wan2", "table": 102, "mark": 0x4B02,
         "addresses": ["203.0.113.2/24"], "probe": ["192.0.2.53"],
         "gateway_ipv4": "203.0.113.1", "network_ipv4": "203.0.113.0/24",
         "gateway_ipv6": "", "network_ipv6": ""},
    ],
    "interval": 0.5, "timeout": 0.4, "down_after": 3, "up_after": 10, "local_main": False,
}  # fmt: skip


def test_the_rules_put_own_routes_first_then_marks_then_addresses_then_the_uplink_in_use():
    config = u.parse_config(RAW)
    assert u.wanted_rules(config, 4) == [
        ("priority", "10100", "lookup", "main", "suppress_prefixlength", "0"),
        ("priority", "10110", "fwmark", "0x4b01/0xffff", "lookup", "101"),
        ("priority", "10120", "from", "198.51.100.0/24", "lookup", "101"),
        ("priority", "10111", "fwmark", "0x4b02/0xffff", "lookup", "102"),
        ("priority", "10121", "from", "203.0.113.0/24", "lookup", "102"),
        ("priority", "10130", "lookup", "100"),
    ]
    assert u.wanted_rules(config, 6) == []  # no uplink has an IPv6 router
    lab = u.parse_config({**RAW, "local_main": True})
    assert ("priority", "10125", "iif", "lo", "lookup", "main") in u.wanted_rules(lab, 4)


def test_the_rules_read_back_from_ip_compare_equal_to_the_wanted_ones():
    shown = [
        {"priority": 10100, "src": "all", "table": "main", "suppress_prefixlen": 0},
        {"priority": 10110, "src": "all", "fwmark": "0x4b01", "fwmask": "0xffff", "table": "101"},
        {"priority": 10120, "src": "198.51.100.0", "srclen": 24, "table": "101"},
        {"priority": 10125, "src": "all", "iif": "lo", "table": "main"},
        {"priority": 10130, "src": "all", "table": "100"},
    ]  # what `ip -j rule show` printed for these rules (iproute2 6.1)
    config = u.parse_config({**RAW, "uplinks": RAW["uplinks"][:1], "local_main": True})
    assert sorted(u._rule_key(r) for r in shown) == sorted(u.wanted_rules(config, 4))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interface": "wan; rm -rf /"}, "bad name"),
        ({"name": "../x"}, "bad name"),
        ({"gateway_ipv4": "198.51.100.1 dev lo"}, "not an IP address"),
        ({"gateway_ipv4": "2001:db8::1"}, "not an IPv4 address"),
        ({"probe": ["192.0.2.0/24"]}, "not an IP address"),
        ({"table": 254}, "bad table"),
        ({"mark": 0x10000}, "out of range"),
        ({"network_ipv4": "198.51.100.0/33"}, "not a network"),
    ],
)
def test_a_value_that_is_not_what_the_role_writes_is_refused_before_any_command(change, message):
    raw = {**RAW, "uplinks": [{**RAW["uplinks"][0], **change}]}
    with pytest.raises(u.ConfigValueError, match=message):
        u.parse_config(raw)


def test_timing_out_of_range_is_refused():
    with pytest.raises(u.ConfigValueError, match="interval"):
        u.parse_config({**RAW, "interval": 0})


def test_an_uplink_is_down_after_three_silent_rounds_and_up_after_ten_good_ones():
    health = u.Health(down_after=3, up_after=10)
    assert [health.record(False) for _ in range(3)] == [False, False, True]
    assert not health.up
    # One good answer among silence does not bring it back (no flapping) ...
    for answered in [True] * 9 + [False] + [True] * 9:
        assert not health.record(answered)
    # ... ten in a row do.
    assert health.record(True) and health.up
    assert health.changes == 2


def test_the_first_healthy_uplink_in_the_models_order_carries_the_traffic():
    config = u.parse_config(RAW)
    health = {"isp": u.Health(3, 10), "isp2": u.Health(3, 10)}
    assert u.choose(config.uplinks, health, "isp") == "isp"
    health["isp"].up = False
    assert u.choose(config.uplinks, health, "isp") == "isp2"
    health["isp2"].up = False
    assert u.choose(config.uplinks, health, "isp2") == "isp2"  # none up: stay


def test_the_echo_request_has_a_valid_checksum_and_a_reply_is_read_back():
    packet = u.echo_request(0x1234, 7)
    assert u._checksum(packet) == 0  # a correct ICMP checksum sums to zero
    src, dst = socket.inet_aton("192.0.2.53"), socket.inet_aton("198.51.100.2")
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(packet), 0, 0, 64, 1, 0, src, dst)
    reply = header + bytes([0]) + packet[1:]  # type 0: echo reply
    assert u.parse_echo_reply(reply) == ("192.0.2.53", 0x1234, 7)
    assert u.parse_echo_reply(header + packet) is None  # a request is not a reply
    assert u.parse_echo_reply(b"\x45\x00") is None
