"""Real attack tools against a victim whose monitor captures live (#15).

On the private segment of tests/monitors/segment.py: masscan, hping3 (ICMP flood, SYN-ACK
reflection, fragments) and a dhcpig-style DISCOVER flood with random MACs against a real DHCP
server (dnsmasq). Every tool is bounded in count (and so in time); each gives exactly its alert.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from tests.monitors.segment import ADDR, MAC, monitor_at_victim, ns_exec, segment

pytestmark = pytest.mark.lab
V, A = ADDR["victim"], ADDR["attacker"]


def tool(name: str) -> pytest.MarkDecorator:
    found = shutil.which(name, path="/usr/sbin:/usr/bin")
    return pytest.mark.skipif(found is None, reason=f"apt install {name}")


ATTACKS = {
    # masscan's own TCP stack: 1,000 ports at 4,000/s (a quarter of a second).
    "masscan": (
        ["masscan", V, "-p1-1000", "--rate", "4000", "--wait", "1", "-e", "veth0",
         "--adapter-ip", A, "--adapter-mac", MAC["attacker"], "--router-mac", MAC["victim"]],
        [(9100001, A, V)],
    ),
    # 6,000 echo requests at 5,000/s.
    "hping3 ICMP flood": (
        ["hping3", "--icmp", "-c", "6000", "-i", "u200", "-q", V],
        [(9100074, None, V)],
    ),
    # SYN-ACKs the victim never asked for (as third parties answer SYNs spoofed from it).
    "hping3 SYN-ACK": (
        ["hping3", "-S", "-A", "-p", "80", "-s", "443", "-c", "6000", "-i", "u200", "-q", V],
        [(9100073, None, V)],
    ),
    # 3,000-byte UDP datagrams: two fragments each, 3,000 non-first fragments in 1.2 s.
    "hping3 fragments": (
        ["hping3", "--udp", "-p", "5000", "-d", "3000", "-c", "3000", "-i", "u400", "-q", V],
        [(9100072, None, V)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_real_tool_gives_exactly_its_alert(tmp_path, name):
    argv, expected = ATTACKS[name]
    if shutil.which(argv[0], path="/usr/sbin:/usr/bin") is None:
        pytest.skip(f"apt install {argv[0]}")
    with segment(), monitor_at_victim(tmp_path, seconds=10) as alerts:
        started = time.monotonic()
        ran = subprocess.run(ns_exec("attacker", *argv), capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        print(f"\n{name}: ran {time.monotonic() - started:.1f} s, rc {ran.returncode}")
    seen = [
        (a["alert"]["signature_id"], a["src_ip"] if expected[0][1] else None, a["dest_ip"])
        for a in alerts
    ]
    print(f"{name}: {[a['alert']['signature'] for a in alerts]}")
    assert seen == expected, alerts


# dhcpig-style: DISCOVERs from 400 random MACs at 400/s, broadcast as a real client's are.
STARVE = """
import random, socket
from scapy.all import BOOTP, DHCP, Ether, IP, UDP
import time
rng = random.Random(7)
out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
out.bind(("veth0", 0))
for i in range(400):
    mac = bytes([0x02] + [rng.randrange(256) for _ in range(5)])
    frame = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
             / UDP(sport=68, dport=67) / BOOTP(chaddr=mac + bytes(10), xid=rng.randrange(2**32))
             / DHCP(options=[("message-type", "discover"), "end"]))
    out.send(bytes(frame))
    time.sleep(0.0025)
"""


@tool("dnsmasq")
def test_dhcp_starvation_against_a_real_dhcp_server_is_one_alert(tmp_path):
    with segment():
        server = subprocess.Popen(
            ns_exec("reflector", "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                    "--port=0", "--user=nobody", f"--listen-address={ADDR['reflector']}",
                    "--bind-interfaces", "--dhcp-range=10.78.0.100,10.78.0.200,10m",
                    f"--dhcp-leasefile={tmp_path / 'leases'}",
                    f"--pid-file={tmp_path / 'dnsmasq.pid'}"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
        with monitor_at_victim(tmp_path, seconds=8) as alerts:
            subprocess.run(ns_exec("attacker", sys.executable, "-c", STARVE), check=True,
                           timeout=60)  # fmt: skip
        server.kill()
    offers = (tmp_path / "leases").read_text().count("\n") if (tmp_path / "leases").exists() else 0
    print(f"\nDHCP starvation: {[a['alert']['signature'] for a in alerts]}; leases {offers}")
    assert [a["alert"]["signature_id"] for a in alerts] == [9100024], alerts
    assert alerts[0]["kastro"]["distinct_client_macs"] >= 100
