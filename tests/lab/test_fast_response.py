"""kastro respond on the lab's real gateways over SSH (pyinfra): the attacker's traffic stops
at the gateway, the block is in every gateway's blocklist, a re-block extends, a block
expires on time, unblock restores, and a gateway that was unreachable gets the block from
reconcile; an isolated server keeps its management access and loses the rest, at its gateway
and on itself. The attacker only pings the hall gateway, through its internet segment.

Named to run before test_lab_network.py, whose last test takes the shared lab down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra

from kastro.lab import attack, hosts
from tests.lab.conftest import INVENTORY, LAB, ROOT

pytestmark = pytest.mark.lab
GATEWAYS = ("hall-gw", "annex-gw")


def ssh(name: str):
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(hosts.state_dir(LAB) / "ssh_config"))


def address(host: str, device: str) -> str:
    return ssh(host).check_output(f"ip -4 -o addr show dev {device}").split()[3].split("/")[0]


def respond(overlay: Path, state: Path, *argv: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "kastro.cli", "respond", *argv, "-i", str(INVENTORY),
         "-i", str(overlay), "--state-dir", str(state), "--json", "--operator", "lab-soc"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
    return proc.returncode, json.loads(lines[-1]) if lines else {"stderr": proc.stderr}


def blocked(gateway: str) -> dict[str, int | None]:
    listing = json.loads(ssh(gateway).check_output("kastro-firewall blocked"))
    return {e["val"]: e.get("expires") for e in listing["blocklist_v4"]}


def pings(target: str) -> bool:
    return ssh("attacker").run(f"ping -c 1 -W 1 {target}").rc == 0


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "respond"


@pytest.fixture
def attacker(lab) -> Iterator[str]:
    # Its packets to municipal addresses leave on its internet segment, from this address
    # (tests/lab/test_alerting.py checks the route).
    source = address("attacker", "eth0")
    yield source
    for gateway in GATEWAYS:  # whatever a failed test left behind
        ssh(gateway).run(f"kastro-firewall unblock {source}")


def test_the_demo_ends_with_the_scanner_blocked_and_the_attack_stopped(lab, attacker):
    """What make demo ends with (kastro lab attack --contain): the scan is detected, its
    source taken from the alert is blocked on every gateway, and the attacker's probe that
    was answered before is dropped and counted after."""
    outcome = attack.run(INVENTORY, LAB, timeout=90)
    assert outcome.alerts, "no KastroAttackDetected"
    done = attack.contain(INVENTORY, LAB, outcome)
    print("\n" + attack.containment_report(done, LAB))
    assert done.source == attacker
    assert done.before["answered"] == 3
    assert done.report["complete"] and done.report["verification"]["answered"] == 0
    assert done.report["gateways"] == dict.fromkeys(GATEWAYS, "ok")
    record = json.loads(
        (hosts.state_dir(LAB) / "respond" / "audit.jsonl").read_text().split("\n")[-2]
    )
    assert record["action"] == "block" and "port scan" in record["reason"]


def test_a_block_stops_the_attacker_at_every_gateway(lab, state, attacker):
    target = address("hall-gw", "z-servers")
    assert pings(target)
    started = time.monotonic()
    probe = ("--verify-from", "attacker", "--verify-to", target)
    code, report = respond(
        lab, state, "block", attacker, "--ttl", "10m", "--reason", "lab scan", *probe
    )
    elapsed = time.monotonic() - started
    assert code == 0 and report["gateways"] == dict.fromkeys(GATEWAYS, "ok"), report
    check = report["verification"]  # the attacker's three pings, dropped and counted
    assert check["verified"] and check["answered"] == 0 and check["dropped"]["hall-gw"] >= 3
    for gateway in GATEWAYS:
        assert 590 <= blocked(gateway)[attacker] <= 600
    assert not pings(target)
    print(f"\nblock on {len(GATEWAYS)} gateways, verified: {elapsed:.1f} s")
    code, _ = respond(lab, state, "block", attacker, "--ttl", "1h", "--reason", "still at it")
    assert code == 0
    assert all(blocked(g)[attacker] >= 3500 for g in GATEWAYS)  # extended, not ignored
    code, _ = respond(lab, state, "block", attacker, "--ttl", "5m", "--reason", "again")
    assert all(blocked(g)[attacker] >= 3400 for g in GATEWAYS)  # never shortened
    # A reboot: the table is gone, the boot service loads the confirmed ruleset and the
    # SOC's entries saved with their end times.
    ssh("hall-gw").check_output("nft delete table inet kastro && kastro-firewall boot")
    assert 3300 <= blocked("hall-gw")[attacker] <= 3600
    assert not pings(target)
    code, listing = respond(lab, state, "list")
    row = next(r for r in listing if r["target"] == attacker)
    assert sorted(row["gateways"]) == sorted(GATEWAYS) and row["operator"] == "lab-soc"
    code, lifted = respond(lab, state, "unblock", attacker, "--reason", "done", *probe)
    assert code == 0 and all(attacker not in blocked(g) for g in GATEWAYS)
    assert lifted["verification"]["answered"] == 3 and lifted["verification"]["verified"]
    assert pings(target)
    log = (state / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in log] == ["block"] * 3 + ["unblock"]


def test_a_block_expires_on_time_everywhere(lab, state, attacker):
    target = address("hall-gw", "z-servers")
    code, _ = respond(lab, state, "block", attacker, "--ttl", "15s", "--reason", "short")
    assert code == 0 and not pings(target)
    time.sleep(16)
    assert pings(target)
    assert all(attacker not in blocked(g) for g in GATEWAYS)
    code, listing = respond(lab, state, "list")
    assert not [r for r in listing if r["target"] == attacker]


def test_networks_cover_the_addresses_inside(lab, state):
    code, _ = respond(lab, state, "block", "198.51.100.0/24", "--ttl", "5m", "--reason", "net")
    assert code == 0
    code, inside = respond(lab, state, "block", "198.51.100.7", "--ttl", "5m", "--reason", "one")
    assert code == 0 and inside["gateways"] == dict.fromkeys(GATEWAYS, "covered")
    assert all("198.51.100.7" not in blocked(g) for g in GATEWAYS)
    respond(lab, state, "unblock", "198.51.100.0/24")
    assert all("198.51.100.0/24" not in blocked(g) for g in GATEWAYS)


def test_a_gateway_that_was_unreachable_gets_the_block_from_reconcile(lab, state):
    container = hosts.container_name(LAB, "annex-gw")
    podman = ["podman", "exec", container, "systemctl"]
    subprocess.run([*podman, "stop", "ssh.socket", "ssh.service"], check=True)
    try:
        code, report = respond(lab, state, "block", "192.0.2.66", "--ttl", "5m", "--reason", "x")
        assert code == 3, report
        assert report["gateways"]["hall-gw"] == "ok"
        assert report["gateways"]["annex-gw"] != "ok"
    finally:
        subprocess.run([*podman, "start", "ssh.service"], check=True)
    assert "192.0.2.66" not in blocked("annex-gw")
    code, fixed = respond(lab, state, "reconcile")
    assert code == 0 and fixed["reconciled"] == {"annex-gw": ["192.0.2.66/32"]}, fixed
    assert 250 <= blocked("annex-gw")["192.0.2.66"] <= 300
    respond(lab, state, "unblock", "192.0.2.66")


def reaches(source: str, address: str, port: int) -> bool:
    return ssh(source).run(f"timeout 3 bash -c '</dev/tcp/{address}/{port}'").rc == 0


def isolated_drops(host: str, hook: str) -> int:
    listing = ssh(host).check_output(f"nft -j list counter inet kastro isolated_{hook}")
    counters = [i["counter"] for i in json.loads(listing)["nftables"] if "counter" in i]
    return int(counters[0]["packets"])


def test_an_isolated_server_keeps_management_and_loses_everything_else(lab, state):
    web, files = "10.30.0.42", "10.30.0.74"  # one address each (IPv4): one report
    assert reaches("web", files, 9100)  # Prometheus on web scrapes node_exporter on files
    try:
        code, reports = respond(lab, state, "isolate", "web", "--reason", "lab: web compromised")
        assert code == 0, reports
        assert reports["gateways"] == {"annex-gw": "ok", "hall-gw": "ok", "web": "ok"}
        assert reports["host"] == "web"
        assert not reaches("web", files, 9100)  # out of the management networks: dropped
        # From the management zone (the probe stands in it) Prometheus' web stays reachable,
        # and the controller's SSH over the management network too.
        assert reaches("probe", web, 9090)
        assert ssh("web").run("true").rc == 0

        # The gateways enforce it without the host's help: take it off web by hand.
        ssh("web").check_output(f"kastro-firewall release {web}")
        before = isolated_drops("hall-gw", "forward")
        assert not reaches("web", files, 9100)
        assert isolated_drops("hall-gw", "forward") > before
        code, fixed = respond(lab, state, "reconcile")
        assert code == 0 and fixed["reconciled"] == {"web": [f"isolate {web}/32"]}, fixed

        code, listing = respond(lab, state, "list")
        row = next(r for r in listing if r["kind"] == "isolate")
        assert row["host"] == "web" and row["expires_in"] is None  # until released
        assert sorted(row["gateways"]) == ["annex-gw", "hall-gw", "web"] and not row["missing_on"]
    finally:
        code, released = respond(lab, state, "release", "web", "--reason", "lab: cleaned")
    assert code == 0 and set(released["gateways"].values()) == {"ok"}, released
    assert reaches("web", files, 9100)
    actions = [
        json.loads(line)["action"] for line in (state / "audit.jsonl").read_text().splitlines()
    ]
    assert actions[0] == "isolate" and actions[-1] == "release"


def test_automatic_response_blocks_the_source_of_a_matching_alert(lab, state, tmp_path):
    """A rule file (opt-in) maps a SYN flood alert to a 10-minute block: the source is blocked
    on every gateway by 'kastro respond auto', audited as the rule's decision. Documentation
    addresses only: nothing is sent to them."""
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "enabled: true\nlimits: {per_minute: 1, per_hour: 5}\nrules:\n"
        "  - {name: synflood-source, detectors: [synflood], action: block, ttl: 10m}\n"
    )
    eve = tmp_path / "eve.json"
    eve.write_text("")
    argv = ("auto", "--rules", str(rules), "--eve", str(eve))
    assert respond(lab, state, *argv)[0] == 0  # the first run starts at the end of the file
    with eve.open("a") as handle:
        for source in ("198.51.100.23", "198.51.100.24"):
            record = {
                "event_type": "alert", "src_ip": source, "dest_ip": "10.30.0.42",
                "alert": {"signature_id": 9000002, "signature": "KASTRO SYN flood",
                          "severity": 1},
                "kastro": {"detector": "synflood"},
            }  # fmt: skip
            handle.write(json.dumps(record) + "\n")
    try:
        code, _ = respond(lab, state, *argv)
        assert code == 0
        assert all(590 <= blocked(g)["198.51.100.23"] <= 600 for g in GATEWAYS)
        assert all("198.51.100.24" not in blocked(g) for g in GATEWAYS)  # 1 a minute
        log = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
        assert [(r["action"], r["operator"]) for r in log] == [
            ("block", "auto:synflood-source"),
            ("auto-refused", "auto:synflood-source"),
        ]
        assert log[0]["complete"] and "rate cap" in log[1]["reason"]
    finally:
        respond(lab, state, "unblock", "198.51.100.23")
