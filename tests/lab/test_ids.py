"""Suricata on the lab's sensor (role suricata, in site.yml): the demo's scan from the internet
hits Kastro's SIDs and reaches Prometheus and Alertmanager; a broken source is rejected while
the old ruleset keeps alerting; a rule disabled in the inventory stops firing; an update needs
no route out and sends nothing out. The idempotence of the role is site.yml's second run
(test_alerting)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import subprocess
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from kastro.controller.model_vars import model_variables
from kastro.lab import attack, hosts, switch
from kastro.lab.hosts import container_name, podman
from tests.lab.conftest import INVENTORY, LAB, run_playbook
from tests.lab.test_alerting import QUERY, active_alerts, api, ssh, web_address
from tests.lab.test_hardening import MAX_EXPOSURE, exposure

pytestmark = pytest.mark.lab

EVE = "/var/log/suricata/eve.json"
CANARY = (
    "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
    ".sendto(('kastro-canary-' + sys.argv[1]).encode(), ('127.0.0.1', 9))"
)


def alerts(probe, sid: int) -> list[dict]:
    out = probe.check_output(f"grep -F '\"signature_id\":{sid},' {EVE} || true")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def scan_probe(source: str) -> str:
    """The demo's scan (nmap -sS of ports 1-200, bounded) from a lab host's network namespace
    to the sensor. Each test scans from a host of its own: the pack's scan rules alert once
    per source every 5 minutes (threshold limit by_src)."""
    target = attack._eth0_address(LAB, "probe")
    pid = podman("inspect", "-f", "{{.State.Pid}}", container_name(LAB, source)).stdout.strip()
    assert pid.isdigit() and pid != "0", f"{source} is not running"
    subprocess.run(
        ["timeout", "30", "nsenter", f"--net=/proc/{pid}/ns/net", "--", "nmap",
         *attack.NMAP_OPTIONS, target],
        capture_output=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return target


def wait_alerts(probe, sid: int, before: int, seconds: float = 30) -> list[dict]:
    deadline = time.monotonic() + seconds
    while True:
        found = alerts(probe, sid)
        if len(found) > before or time.monotonic() > deadline:
            return found[before:]
        time.sleep(1)


def live_canary(probe) -> str:
    live = probe.check_output(
        "grep -o 'KASTRO canary [0-9a-f]*' /var/lib/suricata/rules/kastro.rules"
    )
    return live.split()[-1]


def ids(overlay: Path, *options: str):
    return run_playbook("playbooks/ids.yml", INVENTORY, overlay, options=options)


def test_suricata_runs_as_its_own_account_sandboxed_with_the_proven_ruleset(lab):
    probe = ssh("probe")
    assert probe.service("suricata").is_running and probe.service("suricata").is_enabled
    user = probe.check_output("ps -o user= -C Suricata-Main || ps -o user= -C suricata")
    assert set(user.split()) == {"suricata"}, user
    for unit in ("suricata", "kastro-suricata-metrics"):
        score = exposure(probe, unit)
        print(f"\n{unit}: systemd-analyze security {score}")
        assert score <= MAX_EXPOSURE
    token = live_canary(probe)
    metrics = probe.check_output("cat /var/lib/prometheus/node-exporter/kastro_suricata.prom")
    assert "kastro_suricata_rules_failed 0.0" in metrics
    assert probe.file("/var/lib/kastro/suricata").mode == 0o700
    # Ansible's SSH from this machine (outside the municipality, as the lab is built) is
    # suppressed by the overlay's threshold entry: the tuning workflow, and no false alarm.
    controller = {entry["ip"] for entry in hosts._controller_suppressions(LAB)}
    assert controller and not [a for a in alerts(probe, 9200010) if a["src_ip"] in controller]
    # The canary of the live ruleset raises its alert: the engine runs what the file says.
    before = len(alerts(probe, 9299999))
    probe.check_output(f"python3 -c {shlex.quote(CANARY)} {token}")
    assert wait_alerts(probe, 9299999, before, 15), "the live ruleset's canary is silent"


def test_the_demo_scan_hits_kastros_sid_and_reaches_prometheus_and_alertmanager(lab):
    probe = ssh("probe")
    before = len(alerts(probe, 9200010))
    started = time.monotonic()
    target = scan_probe("home")
    new = wait_alerts(probe, 9200010, before)
    print(f"\nscan to Suricata's alert (SID 9200010): {time.monotonic() - started:.1f} s")
    assert new, "no 'management protocol reached from the internet' alert"
    assert new[0]["dest_ip"] == target and new[0]["community_id"].startswith("1:")
    query = 'kastro_suricata_signature_alerts_total{sid="9200010"}'
    deadline = time.monotonic() + 120
    while True:
        found = api(f"/api/v1/query?query={urllib.parse.quote(query)}")["data"]["result"]
        firing = active_alerts().get(("KastroIdsAlert", "probe"))
        if (found and firing) or time.monotonic() > deadline:
            break
        time.sleep(5)
    print(f"scan to KastroIdsAlert in Alertmanager: {time.monotonic() - started:.1f} s")
    assert found and float(found[0]["value"][1]) >= 1
    assert firing and firing["labels"]["building"] == "hall"


def test_a_broken_source_is_rejected_and_the_old_ruleset_keeps_alerting(lab, tmp_path):
    probe = ssh("probe")
    token = live_canary(probe)
    live = probe.check_output("sha256sum /var/lib/suricata/rules/kastro.rules")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.rules").write_text(
        'alert http any any -> any any (msg:"CSIRT broken"; http.no_such_buffer; '
        'content:"x"; sid:7700009; rev:1;)\n'
    )
    tarball = tmp_path / "broken.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(rules, arcname="rules")
    sources = json.dumps({"suricata_rule_sources": [{"name": "csirt", "url": f"file://{tarball}"}]})
    proc = ids(lab, "-e", sources)
    assert proc.returncode != 0
    assert "http.no_such_buffer" in proc.stdout and "rejected" in proc.stdout
    assert probe.check_output("sha256sum /var/lib/suricata/rules/kastro.rules") == live
    before = len(alerts(probe, 9299999))
    probe.check_output(f"python3 -c {shlex.quote(CANARY)} {token}")
    assert wait_alerts(probe, 9299999, before, 15), "the old ruleset stopped"
    before = len(alerts(probe, 9200010))
    scan_probe("files")
    assert wait_alerts(probe, 9200010, before), "the old ruleset no longer alerts"


def test_a_disabled_rule_stops_firing_and_an_update_needs_no_route_out(lab):
    """The update is built on the controller and pushed: the sensor, with its default route
    gone and every new web or rsync connection it opens outside the lab counted, gets it all."""
    probe = ssh("probe")
    route = probe.check_output("ip -4 route show default")
    count = (
        "nft add table inet kastro_test; "
        "nft add chain inet kastro_test out '{ type filter hook output priority -300; }'; "
        "nft add rule inet kastro_test out ct state new ip daddr != 10.30.0.0/20 "
        "tcp dport '{ 80, 443, 873 }' counter; "
        "nft add rule inet kastro_test out ct state new meta nfproto ipv6 "
        "tcp dport '{ 80, 443, 873 }' counter"
    )
    probe.check_output(count)
    if route:
        probe.check_output(f"ip -4 route del {route.strip()}")
    try:
        started = time.monotonic()
        proc = ids(lab, "-e", json.dumps({"suricata_rules_disable": ["9200010"]}))
        print(f"\nids.yml with a rule disabled (built, pushed, tested, reloaded, proven): "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:]
        counters = probe.check_output("nft list table inet kastro_test")
        assert counters.count("packets 0 bytes 0") == 2, counters
    finally:
        probe.run("nft delete table inet kastro_test")
        if route:
            probe.run(f"ip -4 route add {route.strip()}")
    before = len(alerts(probe, 9200010))
    scan_probe("annex-gw")  # a source that never scanned: no threshold holds its alert back
    source = attack._eth0_address(LAB, "annex-gw")
    deadline = time.monotonic() + 30
    while not any(a["src_ip"] == source for a in alerts(probe, 9200012)):
        assert time.monotonic() < deadline, "the scan was not seen at all (SMB from the internet)"
        time.sleep(1)
    assert len(alerts(probe, 9200010)) == before, "a disabled rule still fires"
    proc = ids(lab)
    assert proc.returncode == 0, proc.stdout[-3000:]
    before = len(alerts(probe, 9200010))
    scan_probe("web")
    assert wait_alerts(probe, 9200010, before), "the rule did not come back"


# --- attacks from real tools, on mirrored zones ----------------------------------------------

SQLMAP_AGENT = "sqlmap/1.7.2#stable (https://sqlmap.org)"


class Visitor:
    """A device the test plugs into a zone of the lab (a laptop, a scanner): a network
    namespace of its own held by a sleeping process; the controller's real tools run in it."""

    def __init__(self, pid: int, address: str) -> None:
        self.pid, self.address = pid, address

    def run(self, *argv: str, seconds: int = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["timeout", str(seconds), "nsenter", "-t", str(self.pid), "-n", "--", *argv],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["timeout", "300", "nsenter", "-t", str(self.pid), "-n", "--", *argv],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip


@contextlib.contextmanager
def visitor(zone: str, tag: str, from_end: int) -> Iterator[Visitor]:
    """Plug a visitor into ``zone`` with the zone's ``from_end``-th last address, the zone's
    gateway as its route; unplugged (its namespace gone) when the block ends."""
    plan = model_variables(str(INVENTORY))["kastro_plan"]["zones"][zone]
    net = ipaddress.ip_network(plan["ipv4"])
    address = str(list(net.hosts())[-from_end])
    sleeper = subprocess.Popen(["unshare", "--net", "sleep", "900"])
    try:
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{sleeper.pid}/ns/net") == mine:  # never plug into ours
            assert time.monotonic() < deadline, "unshare --net did not take"
            time.sleep(0.05)
        switch.plug_device(LAB, hosts.lab_topology(INVENTORY), f"zone:{zone}", sleeper.pid, tag)
        device = Visitor(sleeper.pid, address)
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0"],
                     ["ip", "route", "add", "default", "via", plan["gateway_ipv4"]]):  # fmt: skip
            done = device.run(*argv)
            assert done.returncode == 0, done.stderr
        yield device
    finally:
        sleeper.kill()
        sleeper.wait()


def sids_from(probe, source: str, after: dict[int, int], sids: set[int]) -> set[int]:
    """Which of ``sids`` alerted from ``source`` since the counts in ``after``, within 30 s."""
    deadline = time.monotonic() + 30
    while True:
        seen = {
            sid for sid in sids
            if any(a["src_ip"] == source for a in alerts(probe, sid)[after.get(sid, 0):])
        }  # fmt: skip
        if seen == sids or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def test_attacks_from_real_tools_on_mirrored_zones_hit_the_expected_sids(lab, tmp_path):
    """The annex's staff and guest switches mirrored to the sensor (kastro lab capture), three
    devices plugged in: a staff desktop, a staff scanner with an FTP server, a visitor's laptop
    on the guest Wi-Fi. curl sends an encoded path traversal (Apache CVE-2021-41773) and
    sqlmap's user agent to the annex's web server (files: the policy lets staff reach it),
    logs in to the scanner's FTP (pyftpdlib) in cleartext; smbclient from the guest zone tries
    the file server's SMB (the gateway refuses it, the sensor sees it)."""
    probe, files = ssh("probe"), ssh("files")
    files_ip = model_variables(str(INVENTORY))["kastro_plan"]["hosts"]["files"]["ipv4"]
    expected = {9200031: "desk", 9200050: "desk", 9200020: "desk", 9200001: "guest"}
    with (
        visitor("annex.staff", "d", 2) as desk,
        visitor("annex.staff", "s", 3) as scanner,
        visitor("annex.guest", "g", 2) as guest,
    ):
        # Mirrored after the devices are plugged: a capture mirrors the ports present.
        ifaces = [hosts.capture(INVENTORY, LAB, f"zone:{zone}", "probe")
                  for zone in ("annex.staff", "annex.guest")]  # fmt: skip
        proc = ids(lab, "-e", json.dumps({"suricata_interfaces": ["eth0", *ifaces]}))
        try:
            assert proc.returncode == 0, proc.stdout[-3000:]
            assert set(ifaces) <= set(
                probe.check_output(
                    "grep -o 'interface: [a-z0-9]*' /etc/suricata/suricata.yaml"
                ).split()
            )
            seen = attack_from(desk, scanner, guest, files_ip, tmp_path, expected)
            guest_ip = guest.address
        finally:
            files.run("pkill -f 'http[.]server 80 --bind' || true")
            restored = ids(lab)
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert seen == set(expected), f"missing SIDs: {set(expected) - seen}"
    traversal = alerts(probe, 9200031)[-1]
    assert traversal["dest_ip"] == files_ip and traversal["community_id"].startswith("1:")
    assert traversal["http"]["http_user_agent"].startswith("curl/")
    # Each one reaches Alertmanager on its own (kastro-ids-forward), the canary never does.
    deadline, wanted = time.monotonic() + 60, {str(sid) for sid in expected}
    while True:
        forwarded = suricata_alerts_in_alertmanager()
        if wanted <= set(forwarded) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert wanted <= set(forwarded), f"not in Alertmanager: {wanted - set(forwarded)}"
    smb = forwarded["9200001"]["labels"]
    assert smb["src_ip"] == guest_ip and smb["host"] == "probe" and smb["building"] == "hall"
    assert "9299999" not in forwarded


def suricata_alerts_in_alertmanager() -> dict[str, dict]:
    """Alertmanager's KastroEveAlert alerts from Suricata, by signature id."""
    url = f"https://{web_address()}:9093/api/v2/alerts"
    out = ssh("web").check_output(f"python3 -c {shlex.quote(QUERY)} {shlex.quote(url)}")
    return {
        a["labels"].get("signature_id", ""): a
        for a in json.loads(out)
        if a["labels"]["alertname"] == "KastroEveAlert" and a["labels"].get("engine") == "suricata"
    }


def attack_from(desk: Visitor, scanner: Visitor, guest: Visitor, files_ip: str, ftp_root: Path,
                expected: dict[int, str]) -> set[int]:  # fmt: skip
    """Run the four attacks; the SIDs that alerted from the expected device."""
    probe = ssh("probe")
    ssh("files").check_output(
        "mkdir -p /run/kastro-test-ids && echo intranet > /run/kastro-test-ids/index.html && "
        f"setsid -f timeout 180 python3 -m http.server 80 --bind {files_ip} "
        "--directory /run/kastro-test-ids >/dev/null 2>&1"
    )
    (ftp_root / "scan-0001.pdf").write_text("a scanned page\n")
    server = scanner.start("/usr/bin/python3", "-m", "pyftpdlib", "-i", scanner.address, "-p", "21",
                           "-u", "scanner", "-P", "Skanner-2024", "-d", str(ftp_root))  # fmt: skip
    try:
        before = {sid: len(alerts(probe, sid)) for sid in expected}
        url = f"http://{files_ip}"
        deadline = time.monotonic() + 20
        while desk.run("curl", "-sf", "-o", "/dev/null", f"{url}/", seconds=5).returncode:
            assert time.monotonic() < deadline, "files' web server never answered the desktop"
            time.sleep(1)
        knock = f"exec 3<>/dev/tcp/{scanner.address}/21"
        while desk.run("bash", "-c", knock, seconds=5).returncode:
            assert time.monotonic() < deadline, "the scanner's FTP server never answered"
            time.sleep(1)
        curl = ("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--path-as-is")
        traversal = desk.run(*curl, f"{url}/cgi-bin/.%2e/.%2e/.%2e/etc/passwd")
        agent = desk.run(*curl, "-A", SQLMAP_AGENT, f"{url}/?id=1")
        listing = desk.run("curl", "-s", f"ftp://scanner:Skanner-2024@{scanner.address}/")
        guest.run("smbclient", "-N", "-L", f"//{files_ip}", seconds=8)  # refused by the gateway
        assert (traversal.stdout, agent.stdout) == ("404", "200"), (traversal, agent)
        assert "scan-0001.pdf" in listing.stdout, listing
        found = set()
        for name, device in (("desk", desk), ("guest", guest)):
            sids = {sid for sid, who in expected.items() if who == name}
            found |= sids_from(probe, device.address, before, sids)
        return found
    finally:
        server.terminate()
        server.wait()
