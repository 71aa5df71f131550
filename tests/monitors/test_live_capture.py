"""`--iface`: the TPACKET_V3 ring on a veth between two namespaces this test creates."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
SCANNER, SENSOR = "kmon-scanner", "kmon-sensor"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def veth_pair():
    for ns in (SCANNER, SENSOR):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh(
        "ip",
        "-n",
        SCANNER,
        "link",
        "add",
        "scan0",
        "type",
        "veth",
        "peer",
        "name",
        "sense0",
        "netns",
        SENSOR,
    )
    for ns, dev, addr in ((SCANNER, "scan0", "10.77.0.66/24"), (SENSOR, "sense0", "10.77.0.10/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    yield
    for ns in (SCANNER, SENSOR):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


SCAN = """
from scapy.all import Ether, IP, TCP, sendp, conf
conf.verb = 0
frames = [Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="10.77.0.66", dst="10.77.0.10") /
          TCP(sport=40000 + p, dport=p, flags="S") for p in range(1, 301)]
sendp(frames, iface="scan0")
"""


def test_live_capture_detects_a_scan_and_reports_kernel_counters(veth_pair, tmp_path: Path):
    eve, metrics = tmp_path / "eve.json", tmp_path / "metrics.prom"
    monitor = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            SENSOR,
            sys.executable,
            "-m",
            "monitors",
            "--iface",
            "sense0",
            "--filter",
            "tcp or arp",
            "--duration",
            "6",
            "--eve-log",
            str(eve),
            "--metrics-file",
            str(metrics),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    time.sleep(2)  # ring set up
    subprocess.run(
        ["ip", "netns", "exec", SCANNER, sys.executable, "-c", SCAN], check=True, timeout=60
    )
    _, stderr = monitor.communicate(timeout=30)
    assert monitor.returncode == 0, stderr
    alerts = [json.loads(line) for line in eve.read_text().splitlines()]
    assert [
        (a["alert"]["signature_id"], a["src_ip"], a["dest_ip"], a["in_iface"]) for a in alerts
    ] == [(9100001, "10.77.0.66", "10.77.0.10", "sense0")]
    text = metrics.read_text()
    assert 'kastro_monitor_packets_total{protocol="TCP"} 300.0' in text
    assert "kastro_monitor_capture_drops_total 0.0" in text
    delivered = next(
        line
        for line in text.splitlines()
        if line.startswith("kastro_monitor_capture_packets_total")
    )
    assert float(delivered.split()[-1]) >= 300
    assert "kernel: " in stderr


def test_bad_filter_is_a_clear_error(veth_pair):
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            SENSOR,
            sys.executable,
            "-m",
            "monitors",
            "--iface",
            "sense0",
            "--filter",
            "tcp port banana",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert proc.returncode == 2
    assert "--filter 'tcp port banana' is not a valid capture filter" in proc.stderr


def test_unknown_interface_is_a_clear_error():
    proc = subprocess.run(
        [sys.executable, "-m", "monitors", "--iface", "nosuch0", "--duration", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--iface nosuch0: no such interface" in proc.stderr


SPREAD = """
from scapy.all import Ether, IP, TCP, sendp, conf
conf.verb = 0
frames = [Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="10.77.0.66", dst="10.77.0.10") /
          TCP(sport=20000 + i, dport=443, flags="PA") for i in range(400)]
sendp(frames, iface="scan0")
"""


def test_two_monitors_in_one_fanout_group_share_the_interface(veth_pair, tmp_path: Path):
    """PACKET_FANOUT: each flow goes to one of the workers; together they see every packet."""
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    workers = []
    for i in range(2):
        metrics = tmp_path / f"worker{i}.prom"
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                SENSOR,
                sys.executable,
                "-m",
                "monitors",
                "--iface",
                "sense0",
                "--filter",
                "tcp",
                "--fanout-group",
                "4242",
                "--duration",
                "6",
                "--eve-log",
                "/dev/null",
                "--metrics-file",
                str(metrics),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        workers.append((proc, metrics))
    time.sleep(2)
    subprocess.run(
        ["ip", "netns", "exec", SCANNER, sys.executable, "-c", SPREAD], check=True, timeout=60
    )
    counts = []
    for proc, metrics in workers:
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        line = next(
            (
                x
                for x in metrics.read_text().splitlines()
                if x.startswith('kastro_monitor_packets_total{protocol="TCP"}')
            ),
            "x 0",
        )
        counts.append(float(line.split()[-1]))
    assert sum(counts) == 400
    assert all(count > 0 for count in counts), counts


# A tun interface (as the telework VPN's WireGuard and OpenVPN interfaces are) carries bare IP:
# the test opens one in the sensor's namespace and writes a scan into it, which the kernel
# receives on the tun as if it came through the tunnel.
TUN_SCAN = """
import fcntl, os, struct, subprocess, sys, time
from scapy.all import IP, TCP, raw
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"ktun0", 0x0001 | 0x1000))  # TUN, NO_PI
subprocess.run(["ip", "addr", "add", "10.78.0.10/24", "dev", "ktun0"], check=True)
subprocess.run(["ip", "link", "set", "ktun0", "up"], check=True)
open(sys.argv[1], "w").close()  # ready
time.sleep(float(sys.argv[2]))
for p in range(1, 301):
    syn = IP(src="10.78.0.66", dst="10.78.0.10") / TCP(sport=40000 + p, dport=p, flags="S")
    os.write(fd, raw(syn))
time.sleep(1)
"""


def monitor_in(ns: str, iface: str, eve: Path, metrics: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "monitors", "--iface", iface,
         "--duration", "7", "--eve-log", str(eve), "--metrics-file", str(metrics)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip


def test_live_capture_on_a_tun_interface_detects_a_scan(veth_pair, tmp_path: Path):
    ready = tmp_path / "ready"
    tun = subprocess.Popen(
        ["ip", "netns", "exec", SENSOR, sys.executable, "-c", TUN_SCAN, str(ready), "3"],
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(100):
        if ready.exists():
            break
        time.sleep(0.05)
    assert ready.exists(), tun.stderr.read() if tun.stderr else ""
    assert Path("/dev/net/tun").exists()
    eve, metrics = tmp_path / "eve.json", tmp_path / "metrics.prom"
    monitor = monitor_in(SENSOR, "ktun0", eve, metrics)
    _, stderr = monitor.communicate(timeout=30)
    tun.communicate(timeout=30)
    assert tun.returncode == 0
    assert monitor.returncode == 0, stderr
    alerts = [json.loads(line) for line in eve.read_text().splitlines()]
    assert [
        (a["alert"]["signature_id"], a["src_ip"], a["dest_ip"], a["in_iface"]) for a in alerts
    ] == [(9100001, "10.78.0.66", "10.78.0.10", "ktun0")]
    # the 300 probes in, and the kernel's 300 resets out through the tun
    assert 'kastro_monitor_packets_total{protocol="TCP"} 600.0' in metrics.read_text()


def test_live_capture_on_any_interface_detects_a_scan(veth_pair, tmp_path: Path):
    eve, metrics = tmp_path / "eve.json", tmp_path / "metrics.prom"
    monitor = monitor_in(SENSOR, "any", eve, metrics)
    time.sleep(2)  # ring set up
    subprocess.run(
        ["ip", "netns", "exec", SCANNER, sys.executable, "-c", SCAN], check=True, timeout=60
    )
    _, stderr = monitor.communicate(timeout=30)
    assert monitor.returncode == 0, stderr
    alerts = [json.loads(line) for line in eve.read_text().splitlines()]
    assert [(a["alert"]["signature_id"], a["src_ip"], a["dest_ip"]) for a in alerts] == [
        (9100001, "10.77.0.66", "10.77.0.10")
    ]


def test_a_filter_on_an_interface_without_ethernet_is_a_clear_error():
    proc = subprocess.run(
        [sys.executable, "-m", "monitors", "--iface", "any", "--filter", "tcp", "--duration", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--iface any has no Ethernet header" in proc.stderr
