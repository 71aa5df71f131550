"""The host programs package (kastro.host) and the archive the roles install from it.

Parsers are tested on recorded command output (tests/data/host-output, README there says how
each file was made); the metrics server is a real HTTP server on loopback; the archive is
built twice and run with the system's python3 in isolated mode, as the hosts run it.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kastro.controller.host_archive import BuildDirError, archive_bytes, build
from kastro.host import commands, firewall, links, telework, textfile
from kastro.host.firewall import without_blocklist_elements

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "data" / "host-output"
HOST = ROOT / "kastro" / "host"


def recorded(name: str) -> str:
    return (OUTPUT / name).read_text(encoding="utf-8")


def test_host_programs_import_only_the_standard_library_and_prometheus_client():
    """On a host there is python3 and python3-prometheus-client, nothing of the controller
    (and on sensors, for the monitor, python3-yaml and python3-numpy)."""
    allowed = set(sys.stdlib_module_names) | {"prometheus_client", "__future__"}
    monitors = sorted((ROOT / "monitors").rglob("*.py"))
    for path in [*sorted(HOST.glob("*.py")), *monitors]:
        own = "monitors" if path.is_relative_to(ROOT / "monitors") else "kastro.host"
        # python3-yaml and python3-numpy on sensors (the monitor role installs them)
        extra = {"yaml", "numpy"} if own == "monitors" else set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed | extra or name.startswith(own), (
                    f"{path.name} imports {name}"
                )


def test_the_archive_is_the_same_bytes_every_time(tmp_path):
    first = build(tmp_path / "a" / "kastro-host.pyz")
    again = build(tmp_path / "a" / "kastro-host.pyz")
    other = build(tmp_path / "b" / "kastro-host.pyz")
    assert first["changed"] and not again["changed"]
    assert first["sha256"] == again["sha256"] == other["sha256"]
    names = zipfile.ZipFile(tmp_path / "a" / "kastro-host.pyz").namelist()
    assert "kastro/host/firewall.py" in names and "kastro/__init__.py" in names
    assert "monitors/detectors/portscan.py" in names
    assert not [
        n
        for n in names
        if not n.startswith(("kastro/host/", "monitors/")) and n != "kastro/__init__.py"
    ]


def test_the_archive_runs_with_the_systems_python_alone(tmp_path):
    """Debian's python3 in isolated mode (no virtualenv, no PYTHONPATH), as the wrappers run."""
    archive = tmp_path / "kastro-host.pyz"
    archive.write_bytes(archive_bytes())
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    for program in ("firewall", "links", "telework"):
        code = (
            f"import sys; sys.path.insert(0, {str(archive)!r}); "
            f"from kastro.host.{program} import main; sys.exit(main())"
        )
        proc = subprocess.run([python, "-I", "-c", code, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"kastro-{program}" in proc.stdout
    # The monitors need python3-yaml and python3-prometheus-client (Debian's, on sensors):
    # here the test's interpreter has them; still isolated mode, still only the archive.
    code = (
        f"import sys; sys.path.insert(0, {str(archive)!r}); "
        "from monitors.__main__ import main; sys.exit(main())"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "--iface" in proc.stdout


def test_ping_summary_with_replies():
    assert links.parse_ping(recorded("ping-ok.txt")) == (3, 3, 0.058 / 1000)  # avg 0.058 ms


def test_ping_summary_without_replies():
    sent, received, rtt = links.parse_ping(recorded("ping-lost.txt")) or (0, 0, 0.0)
    assert (sent, received) == (3, 0) and math.isnan(rtt)
    assert links.parse_ping("ping: connect: Network is unreachable\n") is None


def test_htb_class_counters():
    rows = {r["handle"]: r for r in links.parse_tc_classes(recorded("tc-htb-classes.txt"))}
    assert sorted(rows) == ["1:1", "1:10", "1:30"]
    assert rows["1:30"] == {"handle": "1:30", "bytes": 260, "packets": 4, "drops": 0}
    assert rows["1:10"]["packets"] == 0


def test_ospf_neighbours_of_both_daemons():
    assert links.parse_ospf_neighbors(recorded("ospf-neighbors.json")) == [
        {"router_id": "10.60.255.2", "interface": "l-kep", "state": "Full"},
        {"router_id": "10.60.255.3", "interface": "wl-deya", "state": "Init"},
    ]
    assert links.parse_ospf_neighbors(recorded("ospf6-neighbors.json")) == [
        {"router_id": "10.60.255.2", "interface": "l-kep", "state": "Full"}
    ]
    # vtysh prints a sentence, not JSON, when the daemon is down.
    assert links.parse_ospf_neighbors("ospfd is not running\n") is None
    assert links.parse_ospf_neighbors("[]") is None


def test_wireguard_peers_join_handshakes_and_transfer():
    rows = list(
        telework.parse_peers(recorded("wg-latest-handshakes.txt"), recorded("wg-transfer.txt"))
    )
    assert [r["latest_handshake"] for r in rows] == [1764630000, 0]
    assert (rows[0]["rx"], rows[0]["tx"]) == (123456, 654321)
    assert all(r["interface"] == "wg-tw" for r in rows)
    # A line in a shape wg does not print is skipped, not a crash.
    assert list(telework.parse_peers("wg-tw\tonly-two\n", "")) == []


def test_openvpn_refusals_are_counted_from_where_the_last_reading_stopped():
    state = telework.OpenVpnRefusals("openvpn-server@tw.service")
    text = (
        "tw-0001/198.51.100.7:40112 VERIFY ERROR: depth=0, error=certificate revoked: CN=tw-0001\n"
        "tw-0001/198.51.100.7:40112 TLS_ERROR: BIO read tls_read_plaintext error\n"
        "-- cursor: s=abc;i=42\n"
    )
    assert telework.count_refusals(text, state) == 2
    assert state.cursor == "s=abc;i=42"
    assert telework.count_refusals("-- No entries --\n", state) == 0
    assert state.cursor == "s=abc;i=42"  # kept when nothing new came
    # The unit name reaches journalctl's argument list: anything else is refused.
    with pytest.raises(ValueError, match="not a systemd service name"):
        telework.OpenVpnRefusals("openvpn-server@tw.service --since=-1y")


def test_blocklist_elements_are_dropped_from_a_listing():
    listing = (
        "table inet kastro {\n\tset blocklist_v4 {\n\t\ttype ipv4_addr\n"
        "\t\tflags interval,timeout\n\t\telements = { 192.0.2.1 timeout 1h expires 59m }\n"
        "\t}\n}\n"
    )
    assert "192.0.2.1" not in without_blocklist_elements(listing)
    assert "set blocklist_v4" in without_blocklist_elements(listing)


def test_commands_run_argument_lists_and_name_the_failure():
    assert commands.run("echo", "a b; c").stdout == "a b; c\n"  # no shell in between
    with pytest.raises(commands.CommandError, match="false"):
        commands.run("false")
    assert commands.run("false", check=False).returncode == 1
    with pytest.raises(OSError):
        commands.run("/nonexistent/program")


class Counting:
    """A module-level collector, as the host programs write them."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("kastro_test_things", "Things counted", value=3)


def test_published_metrics_are_served_on_loopback(tmp_path):
    output = tmp_path / "metrics" / "test.prom"
    textfile.publish(Counting(), output, interval=1, prefix="kastro_test", once=True)
    text = output.read_text()
    assert "kastro_test_things 3.0" in text
    assert "kastro_test_collect_timestamp_seconds" in text
    assert oct(output.stat().st_mode & 0o777) == "0o644"
    started = textfile.start(output, "127.0.0.1:0")
    server = started[0]
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"kastro_test_things 3.0" in body
        output.unlink()  # the collector has not written yet: the scrape is empty, not an error
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"kastro_test_things" not in body
    finally:
        server.shutdown()
        server.server_close()


def test_listen_addresses():
    assert textfile.parse_listen("10.20.3.97:9552") == ("10.20.3.97", 9552)
    assert textfile.parse_listen("[fd4b::1]:9553") == ("fd4b::1", 9553)
    assert textfile.parse_listen(":9554") == ("127.0.0.1", 9554)


def test_the_links_collector_reports_each_link(tmp_path):
    """The collector on this machine: `lo` as the link (real counters), a prober that has
    seen one probe lose 1 of 5 pings, no FRR (OSPF down, adjacency 0)."""
    link = {
        "name": "a-b",
        "peer_building": "b",
        "interface": "lo",
        "capacity_mbps": 100,
        "shaped_rate_kbit": 95000,
        "qos": [],
    }
    prober = links.Prober(link, interval=5, count=5)  # not started: no ping is sent
    prober.sent, prober.received, prober.last_loss, prober.rtt_seconds = 5, 4, 0.2, 0.001
    collector = links.LinksCollector({"links": [link], "ospf6": True}, [prober])
    output = tmp_path / "links.prom"
    textfile.publish(collector, output, interval=1, prefix=links.METRICS_PREFIX, once=True)
    text = output.read_text()
    labels = 'interface="lo",link="a-b",peer="b"'
    assert f"kastro_link_up{{{labels}}} 1.0" in text
    assert f"kastro_link_probes_lost_total{{{labels}}} 1.0" in text
    assert f"kastro_link_capacity_bytes_per_second{{{labels}}} 1.25e+07" in text
    assert f"kastro_link_transmit_bytes_total{{{labels}}}" in text
    assert 'kastro_ospf_up{family="ipv6"} 0.0' in text
    assert "kastro_links_collect_timestamp_seconds" in text


def test_needs_apply_is_one_json_convention(tmp_path, capsys):
    """kastro-links and kastro-firewall answer needs-apply the same way: JSON, exit 0."""
    from kastro.host import convention

    assert json.loads(convention.needs_apply_json([])) == {"needs_apply": False, "reasons": []}
    config = tmp_path / "links.json"
    config.write_text(
        json.dumps({"links": [{"name": "a-b", "interface": "wl-nowhere", "qos": []}]})
    )
    assert links.main(["--config", str(config), "needs-apply"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["needs_apply"] is True
    assert "wl-nowhere is missing" in verdict["reasons"]
    config.write_text("{not json")
    assert links.main(["--config", str(config), "needs-apply"]) == 2  # cannot tell: not 0


def test_blocklist_elements_from_nft_json():
    items = json.loads(recorded("nft-list-set-blocklist.json"))["nftables"]
    assert firewall.parse_set_elements(items) == [
        {"val": "192.0.2.7", "timeout": 3600, "expires": 3599, "comment": "soc case 12"},
        {"val": "198.51.100.0/24", "timeout": None, "expires": None},
        {"val": "203.0.113.5-203.0.113.9", "timeout": 1800, "expires": 1799, "comment": None},
    ]


def test_a_listing_loses_the_blocklist_entries_and_keeps_everything_else():
    """nft wraps long element lists over lines; all of them go, the allowlist stays."""
    text = firewall.without_blocklist_elements(recorded("nft-list-table.txt"))
    for entry in ("192.0.2.7", "198.51.100.0/24", "203.0.113.5"):
        assert entry not in text
    assert "elements = { 10.20.3.96/27 }" in text
    assert 'counter name "drop_input" drop' in text and text.count("{") == text.count("}")


def test_the_live_digest_ignores_what_changes_by_itself():
    """Counters, handles and the SOC's blocklist entries change without anyone editing the
    table; a rule does not. The digest input must see the second and not the first."""
    items = json.loads(recorded("nft-list-table.json"))["nftables"]
    stable = [firewall._stable(i) for i in items]
    busy = json.loads(json.dumps(items))
    for item in busy:
        for value in item.values():
            if not isinstance(value, dict):
                continue
            value["handle"] = 999  # re-created
            if value.get("name") == "blocklist_v4":
                value["elem"] = [{"prefix": {"addr": "192.0.2.0", "len": 24}}]  # the SOC blocked
            if "packets" in value:
                value["packets"], value["bytes"] = 12345, 678910  # traffic went by
    assert [firewall._stable(i) for i in busy] == stable
    edited = json.loads(json.dumps(items))
    rule = next(i for i in edited if "rule" in i)
    rule["rule"]["expr"][-1] = {"accept": None}
    assert [firewall._stable(i) for i in edited] != stable


def test_only_plain_addresses_reach_nft():
    assert str(firewall._address("192.0.2.7")) == "192.0.2.7/32"
    assert str(firewall._address("2001:db8::/32")) == "2001:db8::/32"
    for bad in ("fe80::1%eth0", "1.2.3.4 } ; flush ruleset", "10.0.0.0/8 timeout 1s", ""):
        with pytest.raises(firewall.FirewallError):
            firewall._address(bad)
    assert firewall.TIMEOUT.fullmatch("1h30m") and not firewall.TIMEOUT.fullmatch("1h; reboot")


def test_the_telework_collector_names_peers_by_teleworker(tmp_path, monkeypatch):
    """The collector over recorded `wg show` output (the command layer is the seam): peers
    named by id from peers.json, an age only for a peer that ever shook hands."""
    outputs = {
        "latest-handshakes": recorded("wg-latest-handshakes.txt"),
        "transfer": recorded("wg-transfer.txt"),
    }
    monkeypatch.setattr(telework, "_wg_show", outputs.__getitem__)
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps({"Q2hhbmdlTWVDaGFuZ2VNZUNoYW5nZU1lQ2hhbmdlTWU=": "tw-0001"}))
    monkeypatch.setattr(telework, "PEERS", peers)
    output = tmp_path / "telework.prom"
    assert telework.main(["collect", "--once", "--output", str(output)]) == 0
    text = output.read_text()
    assert "kastro_telework_up 1.0" in text
    assert (
        'kastro_telework_peer_received_bytes_total{interface="wg-tw",teleworker="tw-0001"}' in text
    )
    assert 'teleworker="unknown"' in text  # the second key is in no peers.json entry
    assert text.count("kastro_telework_peer_handshake_age_seconds{") == 1


def test_the_telework_collector_reports_down_when_wg_fails(tmp_path, monkeypatch):
    def failing(_what: str) -> str:
        raise commands.CommandError("wg show all latest-handshakes: Operation not permitted")

    monkeypatch.setattr(telework, "_wg_show", failing)
    output = tmp_path / "telework.prom"
    telework.main(["collect", "--once", "--output", str(output)])
    assert "kastro_telework_up 0.0" in output.read_text()


def test_the_firewall_collector_reads_counters_and_sets(tmp_path, monkeypatch):
    """Over recorded nft JSON: every named counter, the SOC sets' sizes, no pending change."""
    table = json.loads(recorded("nft-list-table.json"))["nftables"]
    blocklist = json.loads(recorded("nft-list-set-blocklist.json"))["nftables"]

    def nft_json(*args: str) -> list:
        if args[:2] == ("list", "counters"):
            return table
        return blocklist if args[-1] == "blocklist_v4" else []

    monkeypatch.setattr(firewall, "nft_json", nft_json)
    monkeypatch.setattr(firewall, "PENDING", tmp_path / "pending.json")
    monkeypatch.setattr(firewall, "LAST_ROLLBACK", tmp_path / "last-rollback.json")
    output = tmp_path / "firewall.prom"
    assert firewall.main(["collect", "--once", "--output", str(output)]) == 0
    text = output.read_text()
    assert "kastro_firewall_up 1.0" in text
    assert 'kastro_firewall_packets_total{comment="dropped input",counter="drop_input"} 0.0' in text
    assert 'kastro_firewall_set_elements{set="blocklist_v4"} 3.0' in text
    assert "kastro_firewall_change_pending 0.0" in text
    assert "kastro_firewall_last_rollback_timestamp_seconds 0.0" in text


def test_the_firewall_helper_refuses_bad_block_arguments_before_nft(monkeypatch, capsys):
    """Refused before any nft command: nothing is asked of the kernel."""
    called = []
    monkeypatch.setattr(firewall, "nft", lambda *a, **k: called.append((a, k)) or "")
    monkeypatch.setattr(firewall, "set_elements", lambda name: [])
    assert firewall.main(["block", "10.0.0.1; flush ruleset"]) == 1
    assert firewall.main(["block", "192.0.2.9", "--timeout", "1h; reboot"]) == 1
    assert called == []
    assert "is not an IP address" in capsys.readouterr().err


def test_the_firewall_helper_never_blocks_the_allowlist(monkeypatch, capsys):
    called = []
    monkeypatch.setattr(firewall, "nft", lambda *a, **k: called.append((a, k)) or "")
    monkeypatch.setattr(
        firewall,
        "set_elements",
        lambda name: [{"val": "10.20.3.96/27"}] if name == "allowlist_v4" else [],
    )
    assert firewall.main(["block", "10.20.3.100"]) == 1
    assert "allowlist" in capsys.readouterr().err and called == []
    assert firewall.main(["block", "198.51.100.7", "--timeout", "30m"]) == 0
    # One transaction from stdin (the real nft runs it in tests/unit/test_blocklist_nft.py)
    assert called == [
        (
            ("-f", "-"),
            {"stdin": "add element inet kastro blocklist_v4 { 198.51.100.7/32 timeout 1800s }\n"},
        )
    ]


def test_the_build_directory_is_private(tmp_path):
    """Root runs the archive on every host: its directory is made 0700 and closed if open."""
    build(tmp_path / "new" / "kastro-host.pyz")
    assert oct((tmp_path / "new").stat().st_mode)[-3:] == "700"
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)
    build(tmp_path / "open" / "kastro-host.pyz")
    assert oct((tmp_path / "open").stat().st_mode)[-3:] == "700"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_build_directory_of_another_user_or_a_link_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 65534, 65534)
    with pytest.raises(BuildDirError, match="belongs to user id 65534"):
        build(other / "kastro-host.pyz")
    assert not (other / "kastro-host.pyz").exists()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(BuildDirError, match="not a directory"):
        build(tmp_path / "link" / "kastro-host.pyz")


def test_saved_soc_entries_come_back_at_boot_with_the_time_they_had_left(tmp_path, monkeypatch):
    saved = tmp_path / "soc-sets.json"
    monkeypatch.setattr(firewall, "SOC_SETS", saved)
    saved.write_text(
        json.dumps(
            {
                "blocklist_v4": [
                    {"val": "203.0.113.9", "until": 1000.0 + 600},
                    {"val": "198.51.100.0/24", "until": 999.0},  # expired while down
                    {"val": "10.0.0.1; flush ruleset", "until": None},  # never reaches nft
                ],
                "isolated_v4": [{"val": "10.30.0.42", "until": None}],
            }
        )
    )
    assert firewall.saved_entries(now=1000.0).splitlines() == [
        "add element inet kastro blocklist_v4 { 203.0.113.9 timeout 600s }",
        "add element inet kastro isolated_v4 { 10.30.0.42 }",
    ]
    saved.write_text("{not json")
    assert firewall.saved_entries(now=1000.0) == ""
