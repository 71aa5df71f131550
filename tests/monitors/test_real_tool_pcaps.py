"""Traffic captured from real tools (tests/data/pcaps, made by make_pcaps.sh) gives exactly
the expected alerts, and normal traffic gives none."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitors.alerts import AlertSink, ip_text
from monitors.capture import read_file
from monitors.config import MonitorConfig
from monitors.engine import Engine

PCAPS = Path(__file__).resolve().parents[1] / "data" / "pcaps"
ATTACKER, VICTIM, CLIENT, DNS, GATEWAY = (
    "10.66.0.66",
    "10.66.0.10",
    "10.66.0.20",
    "10.66.0.53",
    "10.66.0.1",
)


def alerts_of(name: str):
    written: list = []
    sink = AlertSink(None, max_per_second=1e9, on_write=written.append)
    engine = Engine(MonitorConfig().build_detectors(), sink)
    for batch in read_file(PCAPS / name):
        engine.process_batch(batch)
    return written, engine


@pytest.mark.parametrize(
    ("pcap", "expected"),
    [
        ("nmap-syn-scan.pcap", {(9100001, ATTACKER, VICTIM)}),
        ("nmap-udp-scan.pcap", {(9100004, ATTACKER, VICTIM)}),
        ("nmap-ping-sweep.pcap", {(9100012, ATTACKER, None)}),
        ("hping3-syn-flood.pcap", {(9100006, None, VICTIM)}),
        ("arpspoof.pcap", {(9100021, GATEWAY, VICTIM)}),
        ("ssh-bruteforce.pcap", {(9100041, ATTACKER, VICTIM)}),
        ("iodine-tunnel.pcap", {(9100031, CLIENT, DNS)}),
        # OS detection against two ports only: too few for a port scan (make_fingerprint_pcaps.sh)
        ("nmap-os-detection.pcap", {(9100007, ATTACKER, VICTIM)}),
        ("nmap-aggressive.pcap", {(9100007, ATTACKER, VICTIM)}),
    ],
)
def test_each_attack_raises_its_alert(pcap, expected):
    alerts, _ = alerts_of(pcap)
    # None: that side varies (a sweep's last target, a spoofed flood's random source).
    got = {
        (
            a.signature_id,
            s if s in {e[1] for e in expected} else None,
            d if d in {e[2] for e in expected} else None,
        )
        for a in alerts
        for s, d in [(ip_text(a.src), ip_text(a.dst))]
    }
    assert got == expected


def test_arpspoof_alert_names_the_real_and_the_forged_mac():
    alerts, _ = alerts_of("arpspoof.pcap")
    assert alerts[0].evidence["claimed_ip_mac_old"] == "02:66:00:00:00:01"  # the real gateway
    assert alerts[0].evidence["claimed_ip_mac_new"] == "02:66:00:00:00:66"  # arpspoof's MAC


def test_spoofed_flood_is_one_alert_not_thousands():
    alerts, engine = alerts_of("hping3-syn-flood.pcap")
    assert len(alerts) == 1
    # Fired at the rate threshold (200 SYNs in 2 s), when nearly every SYN had its own source.
    assert alerts[0].evidence["distinct_sources_estimate"] >= 0.9 * alerts[0].evidence["syns"]
    assert engine.stats.packets["TCP"] > 3000


def test_normal_traffic_raises_nothing():
    alerts, engine = alerts_of("normal.pcap")
    assert alerts == []
    assert engine.stats.packets["TCP"] > 500 and engine.stats.packets["UDP"] >= 6


def test_cli_writes_eve_lines_and_metrics_that_promtool_accepts(tmp_path):
    eve, metrics = tmp_path / "eve.json", tmp_path / "metrics.prom"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kastro.cli",
            "monitor",
            "--pcap",
            str(PCAPS / "nmap-syn-scan.pcap"),
            str(PCAPS / "ssh-bruteforce.pcap"),
            "--eve-log",
            str(eve),
            "--metrics-file",
            str(metrics),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "packets/s" in proc.stderr and "alerts: bruteforce 1, portscan 1" in proc.stderr
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        for key in (
            "timestamp",
            "flow_id",
            "community_id",
            "event_type",
            "src_ip",
            "src_port",
            "dest_ip",
            "dest_port",
            "proto",
            "alert",
            "kastro",
        ):
            assert key in record, key
        assert record["event_type"] == "alert"
        assert set(record["alert"]) >= {"signature", "signature_id", "category", "severity"}
        assert record["community_id"].startswith("1:")
    text = metrics.read_text()
    assert 'kastro_monitor_alerts_total{detector="portscan",severity="medium"} 1.0' in text
    assert "kastro_monitor_batch_duration_seconds_bucket" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("src", "dst", "proto", "sport", "dport", "expected"),
    [  # the Community ID specification's test vectors (seed 0), as Zeek's tests use them
        ("128.232.110.120", "66.35.250.204", 6, 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        ("1.2.3.4", "5.6.7.8", 17, 1122, 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
        ("1.2.3.4", "5.6.7.8", 1, 8, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
        (
            "fe80:1:203:405:607:809:a0b:c0d",
            "fe80:1011:1213:1415:1617:1819:1a1b:1c1d",
            58,
            128,
            0,
            "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=",
        ),
    ],
)
def test_community_id_matches_the_spec(src, dst, proto, sport, dport, expected):
    from ipaddress import ip_address

    from monitors.alerts import community_id

    assert (
        community_id(ip_address(src).packed, ip_address(dst).packed, proto, sport, dport)
        == expected
    )
    # Both directions of a flow get the same ID (an echo reply answers the request).
    a, b = ip_address(src).packed, ip_address(dst).packed
    back = (
        (b, a, proto, {8: 0, 128: 129}[sport], 0)
        if proto in (1, 58)
        else (b, a, proto, dport, sport)
    )
    assert community_id(*back) == expected


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    from kastro.cli import main

    config = tmp_path / "monitor.yml"
    config.write_text("detectors:\n  portscan: {vertical_prots: 10}\n")
    assert main(["monitor", "--pcap", str(PCAPS / "normal.pcap"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "detectors.portscan.vertical_prots: unknown setting" in err
    assert "usage:" not in err  # the message, not the whole usage text


def test_missing_pcap_is_a_clear_error(capsys):
    from kastro.cli import main

    assert main(["monitor", "--pcap", "/nonexistent.pcap"]) == 2
    assert "cannot open /nonexistent.pcap" in capsys.readouterr().err


def test_the_sensors_entry_point_in_process(tmp_path, capsys):
    """`kastro-monitor` on a sensor runs monitors.__main__ (from kastro-host.pyz): the same
    run in this process, so its metrics collector is measured too."""
    from monitors.__main__ import main as monitor_main

    eve, metrics = tmp_path / "eve.json", tmp_path / "metrics.prom"
    argv = ["--pcap", str(PCAPS / "nmap-syn-scan.pcap"), "--eve-log", str(eve)]
    assert monitor_main([*argv, "--metrics-file", str(metrics)]) == 0
    text = metrics.read_text()
    assert 'kastro_monitor_packets_total{protocol="TCP"}' in text
    assert 'kastro_monitor_alerts_total{detector="portscan",severity=' in text
    assert "kastro_monitor_batch_duration_seconds_bucket" in text
    assert 'kastro_monitor_tracked_entries{detector="portscan"}' in text
    assert 'kastro_monitor_tracked_entries{detector="conversations"}' in text
    assert len(eve.read_text().splitlines()) == 1
    assert monitor_main(["--check-config"]) == 0
    assert "valid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        monitor_main(["--eve-log", str(eve)])  # neither --iface nor --pcap
    assert stop.value.code == 2
    assert "--iface" in capsys.readouterr().err
