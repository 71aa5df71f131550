"""Kastro's own flows on real hosts (issue #23): the lab-small model says `updates: {cache:
web}`, so every other managed host's apt goes through apt-cacher-ng on web, the only host the
gateways let reach the mirrors; every gateway serves the time to the municipality, and only to
it. Nothing here is written as a policy rule: the flows are derived (kastro.inventory.infra).

The module's name sorts before test_lab_network.py, whose last test removes the shared lab."""

import json
import shlex

import pytest
import testinfra
import yaml

from kastro.controller.model_vars import model_variables
from kastro.lab import hosts
from tests.lab.conftest import INVENTORY, LAB

pytestmark = pytest.mark.lab

CACHE_PORT = 3142
CLIENTS = ("files", "annex-gw", "hall-gw", "probe")
MAX_EXPOSURE = 4.0  # systemd-analyze security's "OK" band
# The real chrony.conf's `allow` lines, the host's own clock as the source (local), never
# touching the clock (-x: the lab's containers share this machine's kernel clock).
TEST_CHRONYD = (
    "grep -E '^(allow|ratelimit) ' /etc/chrony/chrony.conf > /run/kastro-test-chrony.conf && "
    "printf 'local stratum 10\\ncmdport 0\\npidfile /run/kastro-test-chronyd.pid\\n' "
    ">> /run/kastro-test-chrony.conf && chronyd -x -f /run/kastro-test-chrony.conf"
)
STOP_CHRONYD = "kill $(cat /run/kastro-test-chronyd.pid) 2>/dev/null; true"
# One NTP client request (mode 3, version 4) from a host without chrony: answered or not.
NTP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"\\x23" + bytes(47), (sys.argv[1], 123))
try:
    print(len(s.recv(512)))
except OSError:
    print(0)
"""
# 40 requests back to back (each waits 0.5 s at most for its answer): how many are answered.
NTP_BURST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
answered = 0
for _ in range(40):
    s.sendto(b"\\x23" + bytes(47), (sys.argv[1], 123))
    try:
        s.recv(512)
        answered += 1
    except OSError:
        pass
print(answered)
"""
# A GET through the cache for a URL that is not a Debian mirror, and a CONNECT tunnel: both
# must be refused (the targets are the lab's own hosts, so nothing leaves the lab either way).
PROXY_TRIES = """
import http.client, sys, urllib.error, urllib.request
cache, target = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{cache}"}))
try:
    got = str(opener.open(f"http://{target}/", timeout=10).status)
except urllib.error.HTTPError as exc:
    got = str(exc.code)
conn = http.client.HTTPConnection(cache.split(":")[0], int(cache.split(":")[1]), timeout=10)
conn.set_tunnel(target, 443)
try:
    conn.connect()
    tunnel = "open"
except OSError as exc:
    tunnel = str(exc)
print(got)
print(tunnel)
"""


def ssh(name: str):
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(hosts.state_dir(LAB) / "ssh_config"))


def planned(host: str) -> dict:
    return model_variables(INVENTORY)["kastro_plan"]["hosts"][host]


def cache_url() -> str:
    return f"http://{planned('web')['ipv4']}:{CACHE_PORT}"


@pytest.mark.parametrize("name", CLIENTS)
def test_every_other_managed_host_points_apt_at_the_cache(lab, name):
    text = ssh(name).file("/etc/apt/apt.conf.d/01kastro-proxy").content_string
    assert f'Acquire::http::Proxy "{cache_url()}";' in text, text


def test_the_cache_itself_fetches_from_the_mirrors(lab):
    text = ssh("web").file("/etc/apt/apt.conf.d/01kastro-proxy").content_string
    assert "Proxy" not in text.replace("Proxy:", ""), text
    assert "apt cache" in text


def test_a_server_whose_only_way_out_is_its_gateway_updates_through_the_cache(lab):
    """files (annex) without its default route: apt's only way is annex-gw, the radio link,
    hall-gw and web's cache; the cache's log names files as the client."""
    files, web = ssh("files"), ssh("web")
    default = json.loads(files.check_output("ip -j route show default"))
    assert default, "the lab gives files a default route (its management network)"
    route = default[0]
    files.check_output("ip route del default")
    try:
        proc = files.run("timeout 300 apt-get update -o Acquire::Retries=0")
        reach = files.run("timeout 5 python3 -c 'import urllib.request as u; "
                          "u.urlopen(\"http://deb.debian.org/debian/\", timeout=4)'")  # fmt: skip
    finally:
        files.check_output(f"ip route replace default via {route['gateway']} dev {route['dev']}")
    assert proc.rc == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Err:" not in proc.stdout, proc.stdout[-2000:]
    assert reach.rc != 0, "files reached a mirror without the cache"
    log = web.check_output("cat /var/log/apt-cacher-ng/apt-cacher.log")
    assert f"|{planned('files')['ipv4']}|" in log, log[-1500:]


def test_the_cache_fetches_debian_only_and_opens_no_tunnel(lab):
    target = planned("annex-gw")["interfaces"]["servers"]["ipv4"]
    cache = cache_url().removeprefix("http://")
    out = (
        ssh("files")
        .check_output(f"python3 -c {shlex.quote(PROXY_TRIES)} {cache} {target}")
        .splitlines()
    )
    assert out[0] == "403", out
    assert out[1] != "open" and "403" in out[1], out


def test_the_cache_listens_on_its_planned_address_least_privileged(lab):
    web = ssh("web")
    rows = web.check_output(f"ss -Hltn 'sport = :{CACHE_PORT}'").splitlines()
    listening = sorted(row.split()[3] for row in rows)
    assert listening == [f"{planned('web')['ipv4']}:{CACHE_PORT}"], listening
    out = web.check_output("systemd-analyze security --no-pager apt-cacher-ng.service")
    score = float(out.rsplit("Overall exposure level for apt-cacher-ng.service: ", 1)[1].split()[0])
    print(f"\napt-cacher-ng: systemd-analyze security {score}")
    assert score <= MAX_EXPOSURE
    assert web.check_output("systemctl show -p User --value apt-cacher-ng") == "apt-cacher-ng"
    caps = web.check_output("systemctl show -p CapabilityBoundingSet --value apt-cacher-ng")
    assert caps.strip() == "", caps


def reaches_cache(source: str) -> bool:
    proc = ssh(source).run(
        "timeout 6 python3 -c 'import socket,sys; "
        "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4)' "
        f"{planned('web')['ipv4']} {CACHE_PORT}"
    )
    return proc.rc == 0


def test_only_the_municipalitys_hosts_reach_the_cache(lab):
    assert reaches_cache("files")
    assert not reaches_cache("attacker"), "the internet reached the apt cache"


def test_chrony_asks_what_the_model_derives(lab):
    annex_servers = planned("annex-gw")["interfaces"]["servers"]["ipv4"]
    hall_management = planned("hall-gw")["interfaces"]["management"]["ipv4"]
    files = ssh("files").file("/etc/chrony/chrony.conf").content_string
    assert f"server {annex_servers} iburst" in files and "pool " not in files, files
    annex = ssh("annex-gw").file("/etc/chrony/chrony.conf").content_string
    assert f"server {hall_management} iburst" in annex and "pool " not in annex, annex
    assert "allow 10.30.0.0/20" in annex, annex
    hall = ssh("hall-gw").file("/etc/chrony/chrony.conf").content_string
    assert "pool gr.pool.ntp.org" in hall and "allow 10.30.0.0/20" in hall, hall
    assert "ratelimit interval 1 burst 16 leak 2" in hall and "ratelimit" not in files


def ask_time_here(address: str) -> int:
    """NTP_ASK from this machine: outside the municipality, on the lab's management network."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(b"\x23" + bytes(47), (address, 123))
        try:
            return len(sock.recv(512))
        except OSError:
            return 0


def test_the_gateways_serve_the_time_to_the_municipality_only(lab):
    """chronyd on both gateways with their real `allow` lines (their own clock as source,
    -x: never setting it); files asks its gateway, annex-gw asks hall-gw across the link, and
    this machine (not a municipal address, yet on a network that reaches the gateway) gets
    nothing."""
    overlay = yaml.safe_load(lab.read_text(encoding="utf-8"))
    outside = overlay["all"]["hosts"]["hall-gw"]["ansible_host"]
    gateways = [ssh("annex-gw"), ssh("hall-gw")]
    for gateway in gateways:
        gateway.check_output(f"{STOP_CHRONYD}; {TEST_CHRONYD}")
    try:
        annex_servers = planned("annex-gw")["interfaces"]["servers"]["ipv4"]
        hall_management = planned("hall-gw")["interfaces"]["management"]["ipv4"]
        asks = {"files": (ssh("files"), annex_servers), "annex-gw": (gateways[0], hall_management)}
        got = {
            name: int(host.check_output(f"python3 -c {shlex.quote(NTP_ASK)} {address}"))
            for name, (host, address) in asks.items()
        }
        got["this machine"] = ask_time_here(outside)
        burst = int(
            ssh("files").check_output(f"python3 -c {shlex.quote(NTP_BURST)} {annex_servers}")
        )
    finally:
        for gateway in gateways:
            gateway.run(STOP_CHRONYD)
    assert got == {"files": 48, "annex-gw": 48, "this machine": 0}, got
    # chrony's ratelimit: the first 16 or so, then one in four; never all 40.
    assert 12 <= burst <= 30, burst
