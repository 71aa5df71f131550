"""Scenario 2: real packets through the gateway. nmap runs on the controller inside the
client's and the scanner's network namespaces (nsenter), so the lab hosts need no tools;
spoofed packets are crafted with scapy the same way. Traffic stays inside the lab.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

testinfra_hosts = ["hall-gw"]
LAB = os.environ.get("KASTRO_LAB", "mol-fw-traffic")
WEB_V4, WEB_V6 = "10.40.0.74", "fd4b:4000:4000:2::a"
CLIENT_V4 = "10.40.0.42"  # staff
GUEST_V4 = "10.40.0.10"  # the scanner, in the guest zone
PORTS = "22,80,443,8080"
OTHER_STAFF_V4 = "10.40.0.43"  # in the staff zone, no host of the model


def pid(host: str) -> str:
    return subprocess.run(
        ["podman", "inspect", "-f", "{{.State.Pid}}", f"{LAB}-{host}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def inside(host: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nsenter", "-t", pid(host), "-n", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def open_ports(source: str, target: str, *extra: str) -> set[int]:
    proc = inside(
        source,
        "nmap",
        "-n",
        "-Pn",
        "-sS",
        *extra,
        "-p",
        PORTS,
        "--max-retries",
        "1",
        "--host-timeout",
        "60s",
        "-oG",
        "-",
        target,
    )
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    return {int(m) for m in re.findall(r"(\d+)/open/", proc.stdout)}


def test_staff_finds_exactly_the_web_service_and_the_client_its_own_port():
    # 80/443: the staff zone's rule; 8080: a rule for the client host alone.
    assert open_ports("client", WEB_V4) == {80, 443, 8080}


def test_staff_over_ipv6_too():
    assert open_ports("client", WEB_V6, "-6") == {80, 443, 8080}


def test_guest_finds_nothing_on_the_server():
    assert open_ports("scanner", WEB_V4) == set()


def test_guest_finds_nothing_on_the_gateway():
    # The gateway's own address in the guest zone: SSH only comes in on management.
    assert open_ports("scanner", "10.40.0.1") == set()


@pytest.mark.parametrize(("source", "expected"), [("client", 0), ("scanner", 1)])
def test_ping_follows_the_policy(source, expected):
    proc = inside(source, "ping", "-c", "2", "-W", "1", WEB_V4, timeout=20)
    assert proc.returncode == expected, proc.stdout


def counter(host, name: str) -> int:
    data = json.loads(host.check_output(f"nft -j list counter inet kastro {name}"))
    return next(i["counter"]["packets"] for i in data["nftables"] if "counter" in i)


SCAPY = (
    "import sys; from scapy.all import IP, TCP, send; "
    "send([IP(src=sys.argv[1], dst=sys.argv[2])/TCP(sport=40000+i, dport=80, flags='S') "
    "for i in range(5)], verbose=0)"
)


SCAPY_8080 = SCAPY.replace("dport=80,", "dport=8080,")


def test_spoofed_sources_are_dropped_at_the_gateway(host):
    """A staff host forging a guest address is dropped; the same packets with its own
    address reach the server (the control that shows the check can see packets at all)."""
    seen = {}
    for source in (GUEST_V4, CLIENT_V4):
        before = counter(host, "spoofed_staff")
        capture = subprocess.Popen(
            [
                "nsenter",
                "-t",
                pid("web"),
                "-n",
                "timeout",
                "6",
                "tcpdump",
                "-n",
                "-l",
                "-i",
                "z-servers",
                f"tcp dst port 80 and src host {source} and tcp[tcpflags] == tcp-syn",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(1.5)  # tcpdump is listening
        sent = inside("client", sys.executable, "-c", SCAPY, source, WEB_V4, timeout=60)
        assert sent.returncode == 0, sent.stderr
        out, _ = capture.communicate(timeout=15)
        seen[source] = sum(1 for line in out.splitlines() if f" IP {source}." in line)
        print(
            source,
            "reached the server:",
            seen[source],
            "dropped as spoofed:",
            counter(host, "spoofed_staff") - before,
        )
        if source == GUEST_V4:
            assert counter(host, "spoofed_staff") - before == 5
    assert seen == {GUEST_V4: 0, CLIENT_V4: 5}


def test_a_host_rule_admits_that_host_only(host):
    """Another staff address (in the zone's prefix, so not spoofed in the gateway's eyes)
    gets no further than the gateway on 8080; the client's own address does."""
    seen = {}
    for source in (OTHER_STAFF_V4, CLIENT_V4):
        capture = subprocess.Popen(
            ["nsenter", "-t", pid("web"), "-n", "timeout", "6", "tcpdump", "-n", "-l", "-i",
             "z-servers", f"tcp dst port 8080 and src host {source} and tcp[tcpflags] == tcp-syn"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        time.sleep(1.5)  # tcpdump is listening
        sent = inside("client", sys.executable, "-c", SCAPY_8080, source, WEB_V4, timeout=60)
        assert sent.returncode == 0, sent.stderr
        out, _ = capture.communicate(timeout=15)
        seen[source] = sum(1 for line in out.splitlines() if f" IP {source}." in line)
    assert seen == {OTHER_STAFF_V4: 0, CLIENT_V4: 5}
    assert counter(host, "policy4_client_to_web") > 0


def test_refused_traffic_is_counted_per_zone(host):
    # The scanner's probes above were dropped in forward and counted against its zone.
    # (Their log lines go to the kernel log only where net.netfilter.nf_log_all_netns=1:
    # the lab's hosts are network namespaces of one kernel, which keeps them quiet.)
    assert counter(host, "drop_forward_zone_guest") > 0
    assert counter(host, "policy1_hall.staff_to_hall.servers") > 0
