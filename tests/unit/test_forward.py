"""monitors/forward.py: the sensor's EVE alerts reach a real Alertmanager, and nothing is lost.

The EVE lines are the monitor's own (monitors.alerts.Alert.eve); the Alertmanager is Debian's,
on loopback (tests/alertmanager_helpers.py).
"""

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from kastro.monitoring import credentials, deploy
from monitors.alerts import Alert, eve_line
from monitors.forward import Forwarder, Position, alert_of, forward_once, read_new
from tests.alertmanager_helpers import (
    ALERTMANAGER,
    AMTOOL,
    api,
    free_port,
    running_alertmanager,
)

needs_alertmanager = pytest.mark.skipif(
    AMTOOL is None, reason="apt install prometheus-alertmanager"
)
LABELS = {"host": "sensor1", "building": "cityhall"}
ROOT = Path(__file__).resolve().parents[2]


def scan(src: str = "10.20.0.130", dst: str = "10.20.2.10", ts: float | None = None) -> str:
    alert = Alert(
        detector="portscan", signature_id=9100001, signature="KASTRO port scan (TCP SYN)",
        category="Attempted Information Leak", severity=2, ts=ts or time.time(),
        src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), proto=6,
        sport=40000, dport=22, evidence={"ports": 120},
    )  # fmt: skip
    return eve_line(alert.eve("eth0"))


def config(tmp_path: Path) -> Path:
    path = tmp_path / "am.yml"
    path.write_text(
        yaml.safe_dump({"route": {"receiver": "none"}, "receivers": [{"name": "none"}]})
    )
    return path


def alerts_in(base: str) -> list[dict]:
    return [a for a in api(base, "/api/v2/alerts") if a["labels"]["alertname"] == "KastroEveAlert"]


@needs_alertmanager
def test_an_eve_alert_becomes_one_alertmanager_alert_with_bounded_labels(tmp_path):
    eve, position = tmp_path / "eve.json", tmp_path / "pos.json"
    flow = json.dumps({"event_type": "flow", "src_ip": "10.0.0.1"})
    eve.write_text(scan() + flow + "\n" + scan() + "not json\n")
    with running_alertmanager(config(tmp_path), tmp_path / "data") as base:
        forwarder = Forwarder(base, LABELS)
        counts = forward_once(forwarder, eve, position)
        assert counts == {"read": 2, "sent": 1, "skipped": 1}
        [got] = alerts_in(base)
        assert got["labels"] == {
            "alertname": "KastroEveAlert", "severity": "warning", "host": "sensor1",
            "building": "cityhall", "signature_id": "9100001",
            "signature": "KASTRO port scan (TCP SYN)", "category": "Attempted Information Leak",
            "detector": "portscan", "src_ip": "10.20.0.130", "dest_ip": "10.20.2.10",
        }  # fmt: skip
        assert json.loads(got["annotations"]["eve"])["alert"]["signature_id"] == 9100001
        assert got["annotations"]["summary_el"].startswith("Ο αισθητήρας sensor1 εντόπισε")
        # Nothing new: nothing sent. The same attack again soon: the alert is not re-sent.
        assert forward_once(forwarder, eve, position)["sent"] == 0
        with eve.open("a") as out:
            out.write(scan())
        assert forward_once(forwarder, eve, position) == {"read": 1, "sent": 0, "skipped": 0}
        # Much later (a third of resolve_after): refreshed, still one alert.
        later = time.time() + 101
        with eve.open("a") as out:
            out.write(scan())
        assert forward_once(forwarder, eve, position, now=later)["sent"] == 1
        assert len(alerts_in(base)) == 1


@needs_alertmanager
def test_nothing_is_lost_while_alertmanager_is_unreachable(tmp_path):
    eve, position = tmp_path / "eve.json", tmp_path / "pos.json"
    eve.write_text(scan(src="10.20.0.131"))
    port = free_port()
    forwarder = Forwarder(f"http://127.0.0.1:{port}", LABELS, timeout=2)
    with pytest.raises(OSError):
        forward_once(forwarder, eve, position)
    assert not position.exists()  # the line was not consumed
    with running_alertmanager(config(tmp_path), tmp_path / "data", port=port) as base:
        assert forward_once(forwarder, eve, position)["sent"] == 1
        assert [a["labels"]["src_ip"] for a in alerts_in(base)] == ["10.20.0.131"]


def test_a_partial_line_waits_and_a_rotated_file_is_read_from_its_start(tmp_path):
    eve = tmp_path / "eve.json"
    line = scan()
    eve.write_text(line + line[:30])
    first = read_new(eve, Position())
    assert len(first.records) == 1 and first.end.offset == len(line.encode())
    with eve.open("a") as out:
        out.write(line[30:])
    second = read_new(eve, first.end)
    assert len(second.records) == 1
    eve.rename(tmp_path / "eve.json.1")
    eve.write_text(scan(src="10.20.0.140"))
    third = read_new(eve, second.end)
    assert [r["src_ip"] for r in third.records] == ["10.20.0.140"]


@pytest.mark.parametrize(
    "record",
    [
        {"event_type": "alert", "alert": {"severity": [1], "signature": "x\n\x1b[31m" * 50}},
        {"event_type": "alert", "alert": "not a dict", "src_ip": "999.1.1.1"},
        {"event_type": "alert", "src_ip": {"a": 1}, "kastro": [1, 2]},
        ["not", "an", "object"],
    ],
)
def test_hostile_eve_lines_never_crash_and_stay_bounded(tmp_path, record):
    eve = tmp_path / "eve.json"
    eve.write_text(json.dumps(record) + "\n" + "x" * 70000 + "\n")
    batch = read_new(eve, Position())
    forwarder = Forwarder("http://127.0.0.1:9", LABELS)
    for parsed in batch.records:
        made = alert_of(parsed, LABELS, 300, time.time())
        assert all(
            len(v) <= 120 and "\n" not in v and "\x1b" not in v for v in made["labels"].values()
        )
        assert "src_ip" not in made["labels"] or made["labels"]["src_ip"] != "999.1.1.1"
    assert forwarder.due([], 0) == []


def suricata(sid: int, severity: int, signature: str) -> str:
    """An EVE alert as Suricata 7 writes it (the fields the forwarder reads)."""
    return json.dumps({
        "timestamp": "2026-12-07T03:00:00.000000+0000", "event_type": "alert",
        "src_ip": "10.30.0.125", "src_port": 40000, "dest_ip": "10.30.0.74", "dest_port": 445,
        "proto": "TCP", "community_id": "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
        "alert": {"action": "allowed", "gid": 1, "signature_id": sid, "rev": 1,
                  "signature": signature, "category": "Attempted Information Leak",
                  "severity": severity},
    }) + "\n"  # fmt: skip


@needs_alertmanager
def test_suricatas_informational_events_and_its_canary_stay_out(tmp_path):
    """Suricata's forwarder (role suricata) runs with --max-severity 2 --ignore-sid 9299999."""
    eve, position = tmp_path / "eve.json", tmp_path / "pos.json"
    eve.write_text(
        suricata(2200074, 3, "SURICATA TCPv4 invalid checksum")
        + suricata(9299999, 1, "KASTRO canary 0123abcd")
        + suricata(9200001, 2, "KASTRO SMB from a guest, IoT or CCTV zone")
    )
    with running_alertmanager(config(tmp_path), tmp_path / "data") as base:
        labels = {**LABELS, "engine": "suricata"}
        forwarder = Forwarder(base, labels, max_severity=2, ignore_sids=frozenset({"9299999"}))
        assert forward_once(forwarder, eve, position) == {"read": 3, "sent": 1, "skipped": 0}
        [got] = alerts_in(base)
        assert got["labels"]["signature_id"] == "9200001"
        assert got["labels"]["engine"] == "suricata" and "detector" not in got["labels"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--alertmanager", "http://a:9093/api?x=1"], "--alertmanager"),
        (["--alertmanager", "file:///etc/passwd"], "--alertmanager"),
        (["--label", "Building=x"], "--label"),
        (["--label", "building=a;rm -rf /"], "--label"),
        (["--resolve-after", "5"], "--resolve-after"),
        (["--ignore-sid", "9299999; reboot"], "--ignore-sid"),
        (["--max-severity", "4"], "--max-severity"),
    ],
)
def test_bad_arguments_are_refused_naming_the_option(tmp_path, args, says):
    base = ["--eve", str(tmp_path / "e"), "--position", str(tmp_path / "p"),
            "--alertmanager", "http://127.0.0.1:9093", "--once"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "monitors.forward", *base, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr


@needs_alertmanager
def test_over_tls_with_the_password_as_the_monitoring_role_sets_it_up(tmp_path):
    """Alertmanager with the monitoring role's web configuration (its CA, certificate and
    bcrypt password): the forwarder with the CA and the password gets its alert in; with a
    wrong password nothing is accepted and the read position stays, so nothing is lost."""
    secrets = tmp_path / "secrets"
    credentials.ensure(secrets, "dimos-kastrou.gr", "monitor", ["127.0.0.1"])
    web = deploy.web_config((secrets / "web.bcrypt").read_text().strip())
    web["tls_server_config"].update(
        cert_file=str(secrets / "monitor.crt"), key_file=str(secrets / "monitor.key")
    )
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
    port = free_port()
    daemon = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={config(tmp_path)}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         f"--web.config.file={tmp_path / 'web.yml'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(secrets / "ca.crt"))
    password = (secrets / "web.password").read_text().strip()
    auth = "Basic " + base64.b64encode(f"kastro:{password}".encode()).decode()

    def alerts() -> list[dict]:
        request = urllib.request.Request(f"{base}/api/v2/alerts", headers={"Authorization": auth})
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                alerts()
                break
            except OSError:
                assert time.monotonic() < deadline, "Alertmanager with TLS did not come up"
                time.sleep(0.2)
        eve, position = tmp_path / "eve.json", tmp_path / "pos.json"
        eve.write_text(scan())
        wrong = Forwarder(base, LABELS, context=context, authorization="Basic a2FzdHJvOng=")
        with pytest.raises(OSError, match="401"):
            forward_once(wrong, eve, position)
        assert not position.exists() and alerts() == []
        argv = [
            sys.executable, "-m", "monitors.forward", "--eve", str(eve), "--position",
            str(position), "--alertmanager", base, "--ca-file", str(secrets / "ca.crt"),
            "--password-file", str(secrets / "web.password"), "--once",
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["sent"] == 1
        assert [a["labels"]["alertname"] for a in alerts()] == ["KastroEveAlert"]
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alertmanager", "https://127.0.0.1:9093"], "needs --ca-file"),
        (["--alertmanager", "http://127.0.0.1:9093", "--ca-file", "x"], "need an https://"),
    ],
)
def test_tls_arguments_are_checked(tmp_path, args, message):
    argv = [sys.executable, "-m", "monitors.forward", "--eve", str(tmp_path / "e"), "--position",
            str(tmp_path / "p"), *args, "--once"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
