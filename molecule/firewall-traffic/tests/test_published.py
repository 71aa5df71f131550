"""Published services (kastro_published, issue #22), from the attacker's side: the lab's
internet hosts (`home`, standing for the web contractor's office, and `attacker`) reach the
web server on its public address, and only the ports published for them; inside users reach it
on the public address too (hairpin). Everything runs in the lab's own namespaces, on the
lab's TEST-NET-2 and 2001:db8:100::/64 addresses, which exist nowhere else.
"""

import json
import os
import re
import subprocess
import sys

testinfra_hosts = ["hall-gw"]
LAB = os.environ.get("KASTRO_LAB", "mol-fw-traffic")
PUBLIC_V4, PUBLIC_V6 = "198.51.100.5", "2001:db8:100::5"
GATEWAY_WAN_V4 = "198.51.100.1"
PORTS = "22,80,443,8080"
CLIENT_V4 = "10.40.0.42"


def pid(host: str) -> str:
    return subprocess.run(
        ["podman", "inspect", "-f", "{{.State.Pid}}", f"{LAB}-{host}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def inside(host: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nsenter", "-t", pid(host), "-n", *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def open_ports(source: str, target: str, *extra: str) -> set[int]:
    proc = inside(
        source, "nmap", "-n", "-Pn", "-sS", *extra, "-p", PORTS, "--max-retries", "1",
        "--host-timeout", "60s", "-oG", "-", target,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    return {int(m) for m in re.findall(r"(\d+)/open/", proc.stdout)}


def http_status(source: str, url: str) -> str:
    proc = inside(
        source, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url,
        timeout=20,
    )  # fmt: skip
    return proc.stdout.strip()


def counter(host, name: str) -> int:
    data = json.loads(host.check_output(f"nft -j list counter inet kastro {name}"))
    return next(i["counter"]["packets"] for i in data["nftables"] if "counter" in i)


def test_the_internet_finds_exactly_the_published_ports():
    # The attacker: the website only. The contractor's office: the website and SSH.
    assert open_ports("attacker", PUBLIC_V4) == {80, 443}
    assert open_ports("home", PUBLIC_V4) == {22, 80, 443}


def test_the_website_answers_over_ipv6_too():
    assert open_ports("attacker", PUBLIC_V6, "-6") == {80, 443}
    assert http_status("attacker", f"http://[{PUBLIC_V6}]/") == "200"


def test_the_website_answers_on_its_public_address(host):
    before = counter(host, "published_website_v4")
    assert http_status("attacker", f"http://{PUBLIC_V4}/") == "200"
    assert counter(host, "published_website_v4") > before


def test_the_gateways_own_uplink_address_offers_nothing():
    assert open_ports("attacker", GATEWAY_WAN_V4) == set()


def test_inside_users_reach_the_public_address_hairpin():
    # Staff by the public name; the guest zone too (published means public), although the
    # policy keeps guests away from the server's own address.
    assert http_status("client", f"http://{PUBLIC_V4}/") == "200"
    assert http_status("scanner", f"http://{PUBLIC_V4}/") == "200"
    assert http_status("scanner", "http://10.40.0.74/") == "000"


def test_a_neighbour_in_the_servers_zone_reaches_it_through_the_gateway():
    # The web server asks for its own public address: DNAT back into its own zone, and the
    # source NAT that makes the reply come back through the gateway.
    assert http_status("web", f"http://{PUBLIC_V4}/") == "200"


# Opens connections as fast as it can, for at most 3 seconds and 400 attempts.
FLOOD = (
    "import socket, sys, time\n"
    "end = time.monotonic() + 3; ok = 0\n"
    "for _ in range(400):\n"
    "    if time.monotonic() > end: break\n"
    "    s = socket.socket(); s.settimeout(0.3)\n"
    "    try: s.connect((sys.argv[1], 80)); ok += 1\n"
    "    except OSError: pass\n"
    "    finally: s.close()\n"
    "print(ok)\n"
)


def test_one_source_over_the_rate_is_held_back_and_others_are_not(host):
    before = counter(host, "published_website_v4_limited")
    flood = inside("attacker", sys.executable, "-c", FLOOD, PUBLIC_V4, timeout=30)
    assert flood.returncode == 0, flood.stderr
    held = counter(host, "published_website_v4_limited") - before
    print("connections that got through:", flood.stdout.strip(), "held back:", held)
    assert held > 0
    assert http_status("home", f"http://{PUBLIC_V4}/") == "200"


def test_kastro_lab_reach_finds_what_the_model_says():
    """The admin's own check (kastro lab reach): every published port from both internet
    hosts, open exactly where `from` admits the source, and a port that is not published."""
    root = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")
    proc = subprocess.run(
        [sys.executable, "-m", "kastro.cli", "lab", "reach", f"{root}/molecule/_lab/fortress",
         "--lab", LAB],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    ssh = [line.split() for line in lines if line.startswith("contractor-ssh")]
    seen = sorted((row[3], row[5].split("/")[1]) for row in ssh)
    assert seen == [("attacker", "closed"), ("home", "open")]
    assert any(line.startswith("-") and "tcp/8080" in line for line in lines)
