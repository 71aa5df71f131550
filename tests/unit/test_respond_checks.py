"""kastro respond on the controller: arguments checked strictly before anything changes,
the allowlist refused, decisions kept (never shortened) and every action audited."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from kastro.cli import main
from kastro.respond import actions
from kastro.respond.decisions import (
    Decision,
    DecisionError,
    DecisionStore,
    check_reason,
    duration_text,
    parse_target,
    parse_ttl,
)
from kastro.respond.gateways import Gateway, _ssh_options, isolation_target

ROOT = Path(__file__).resolve().parents[2]
LAB = str(ROOT / "tests" / "data" / "lab-small")


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1; flush ruleset",
        "203.0.113.9 }",
        "fe80::1%eth0",
        "203.0.113.9/24",  # host bits set: say which network is meant
        "127.0.0.1",
        "224.0.0.5",
        "",
        "example.gr",
    ],
)
def test_targets_that_are_refused(text: str) -> None:
    with pytest.raises(DecisionError):
        parse_target(text)


def test_wide_networks_need_confirmation() -> None:
    with pytest.raises(DecisionError, match="--confirm-wide"):
        parse_target("198.51.0.0/16")
    assert str(parse_target("198.51.0.0/16", confirm_wide=True)) == "198.51.0.0/16"
    assert str(parse_target("2001:db8:66::/48")) == "2001:db8:66::/48"
    with pytest.raises(DecisionError, match="--confirm-wide"):
        parse_target("2001:db8::/32")


@pytest.mark.parametrize("text", ["1h }; flush ruleset", "0m", "1y", "-1h", "91d", "30", "5s"])
def test_durations_that_are_refused(text: str) -> None:
    with pytest.raises(DecisionError):
        parse_ttl(text)


def test_durations() -> None:
    assert parse_ttl("1h30m") == 5400
    assert parse_ttl("7d") == 7 * 86400
    assert duration_text(5400) == "1h30m"
    assert duration_text(parse_ttl("2d3h4m5s")) == "2d3h4m5s"


def test_reasons() -> None:
    assert check_reason("  SYN flood   από 203.0.113.9 ") == "SYN flood από 203.0.113.9"
    for bad in ("", "   ", "a\x00b", "x" * 301):
        with pytest.raises(DecisionError):
            check_reason(bad)


def test_the_allowlist_and_the_controller_are_never_blocked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = Gateway("gw", "hall", "192.0.2.1", allowlist=["10.30.0.48/29"])
    # Where this controller reaches the gateway from (the routing table's choice, measured
    # on a lab in tests/lab/test_fast_response.py): here a fixed address.
    monkeypatch.setattr(Gateway, "controller_address", lambda self: "198.51.100.5")
    with pytest.raises(DecisionError, match="never blocked"):
        actions.refuse_protected(parse_target("10.30.0.50"), [gateway])
    with pytest.raises(DecisionError, match="never blocked"):
        actions.refuse_protected(parse_target("10.30.0.0/24"), [gateway])  # contains it
    with pytest.raises(DecisionError, match="controller"):
        actions.refuse_protected(parse_target("198.51.100.0/24"), [gateway])
    actions.refuse_protected(parse_target("203.0.113.9"), [gateway])  # anything else passes


def test_decisions_are_kept_privately_and_audited(tmp_path: Path) -> None:
    store = DecisionStore(tmp_path / "respond")
    store.save({"203.0.113.9/32": Decision("203.0.113.9/32", 2e9, "scan", "eleni")})
    store.audit({"action": "block", "target": "203.0.113.9/32", "gateways": {"gw": "ok"}})
    store.audit({"action": "unblock", "target": "203.0.113.9/32", "gateways": {"gw": "ok"}})
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.audit_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert [r["action"] for r in store.audit_records()] == ["block", "unblock"]
    assert store.load(now=1e9)["203.0.113.9/32"].operator == "eleni"
    assert store.load(now=3e9) == {}  # expired decisions are not in force


def test_a_damaged_decision_file_is_named(tmp_path: Path) -> None:
    store = DecisionStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(DecisionError, match=r"decisions\.json"):
        store.load()


def test_ssh_options_come_from_the_ansible_inventory() -> None:
    options = _ssh_options(
        "-o UserKnownHostsFile=/x/known_hosts -o StrictHostKeyChecking=yes -o ControlMaster=auto"
    )
    assert options["userknownhostsfile"] == "/x/known_hosts"
    assert options["stricthostkeychecking"] == "yes"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["block", "10.0.0.1; reboot", "--reason", "x"], "not an IP address"),
        (["block", "203.0.113.9", "--ttl", "1h }; flush ruleset", "--reason", "x"], "--ttl"),
        (["block", "198.51.0.0/16", "--reason", "x"], "--confirm-wide"),
        (["block", "203.0.113.9", "--reason", " "], "--reason"),
        (["block", "10.30.0.50", "--reason", "x"], "never blocked"),
        (["block", "203.0.113.9", "--reason", "x", "--building", "nowhere"], "not a building"),
        (["block", "203.0.113.9", "--reason", "x", "--operator", "a;b"], "--operator"),
        (["isolate", "nosuchhost", "--reason", "x"], "neither a host of the inventory"),
        (["isolate", "hall-gw", "--reason", "x"], "cut its whole building"),
        (["isolate", "probe", "--reason", "x"], "never blocked"),  # in the management zone
        (["isolate", "10.30.0.64/28", "--reason", "x"], "isolate one host"),
        (["isolate", "10.30.0.42; reboot", "--reason", "x"], "neither a host"),
        (["isolate", "web", "--ttl", "1h }", "--reason", "x"], "--ttl"),
        (["isolate", "web", "--reason", ""], "--reason"),
        (["reconcile", "--every", "5", "--metrics-listen", "0.0.0.0:x"], "--metrics-listen"),
        (["reconcile", "--metrics-listen", "web:9559"], "--metrics-listen"),
        (["block", "203.0.113.9", "--reason", "x", "--verify-from", "web"], "go together"),
        (
            ["block", "203.0.113.9", "--reason", "x", "--verify-from", "web", "--verify-to", "a;b"],
            "not an IP address",
        ),
        (
            [
                "block",
                "203.0.113.9",
                "--reason",
                "x",
                "--verify-from",
                "nobody",
                "--verify-to",
                "10.30.0.33",
            ],
            "--verify-from nobody",
        ),
    ],
)
def test_bad_input_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Refused on the controller, before any gateway is contacted: no decision stored, no
    audit line (the gateways of this inventory do not even resolve)."""
    state = tmp_path / "state"
    code = main(["respond", *argv, "-i", LAB, "--state-dir", str(state)])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (state / "decisions.json").exists() and not (state / "audit.jsonl").exists()


def test_the_log_shows_the_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = DecisionStore(tmp_path)
    store.audit(
        {
            "action": "block",
            "target": "203.0.113.9/32",
            "operator": "eleni",
            "reason": "scan",
            "gateways": {"hall-gw": "ok"},
        }
    )
    assert main(["respond", "log", "-i", LAB, "--state-dir", str(tmp_path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["operator"] == "eleni" and record["gateways"] == {"hall-gw": "ok"}


def test_isolation_targets_come_from_the_plan() -> None:
    web = isolation_target([LAB], "web")
    assert web.addresses == ["10.30.0.42"] and web.host and web.host.name == "web"
    assert web.host.role == "server" and web.host.address  # reached over SSH like Ansible
    by_address = isolation_target([LAB], "10.30.0.74")  # the same host, found by address
    assert by_address.name == "files" and by_address.host and by_address.host.name == "files"
    device = isolation_target([LAB], "10.30.0.20")  # a PC: isolated at the gateways only
    assert device.name == "10.30.0.20" and device.host is None


def test_an_isolation_never_shortens_and_until_lifted_stays(tmp_path: Path) -> None:
    now = 1_000_000.0
    kept = Decision("10.30.0.42/32", now + 7200, "r", "o", kind="isolate")
    assert actions._later(now, 600, kept) == now + 7200
    assert actions._later(now, 3 * 3600, kept) == now + 3 * 3600
    assert actions._later(now, 600, Decision("x", None, "r", "o")) is None
    assert actions._later(now, None, kept) is None
    store = DecisionStore(tmp_path)
    store.save({"isolate 10.30.0.42/32": Decision("10.30.0.42/32", None, "r", "o", kind="isolate")})
    assert store.load(now + 10**9)["isolate 10.30.0.42/32"].remaining(now) is None


def test_isolations_go_to_the_gateways_and_the_host_itself() -> None:
    gateway = Gateway("hall-gw", "hall", "10.0.0.1")
    web = Gateway("web", "hall", "10.0.0.2", role="server")
    assert actions._applies("block", "", gateway) and not actions._applies("block", "", web)
    assert actions._applies("isolate", "web", web) and actions._applies("isolate", "web", gateway)
    assert not actions._applies("isolate", "files", web)


def test_metrics_count_what_the_store_and_the_audit_log_hold(tmp_path: Path) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from kastro.respond import metrics

    store = DecisionStore(tmp_path)
    store.save(
        {
            "203.0.113.9/32": Decision("203.0.113.9/32", 2e9, "scan", "eleni"),
            "isolate 10.30.0.42/32": Decision("10.30.0.42/32", None, "x", "o", kind="isolate"),
        }
    )
    for seconds, complete in ((0.4, True), (1.5, True), (7.0, False)):
        store.audit(
            {"action": "block", "complete": complete, "seconds": seconds, "gateways": {"a": "ok"}}
        )
    store.audit({"action": "reconcile", "complete": False, "gateways": {"a": "ok", "b": "down"}})
    text = generate_latest(metrics.registry(store)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("kastro_respond_decisions", (("kind", "block"),))] == 1
    assert samples[("kastro_respond_decisions", (("kind", "isolate"),))] == 1
    key = (("action", "block"), ("result", "complete"))
    assert samples[("kastro_respond_actions_total", key)] == 2
    assert (
        samples[("kastro_respond_actions_total", (("action", "block"), ("result", "partial")))] == 1
    )
    assert (
        samples[("kastro_respond_apply_seconds_bucket", (("action", "block"), ("le", "2.0")))] == 2
    )
    assert samples[("kastro_respond_apply_seconds_count", (("action", "block"),))] == 3
    assert samples[("kastro_respond_hosts_missing", ())] == 1
    assert metrics.write(store).read_text() == text
    if shutil.which("promtool"):  # Prometheus' own naming lint
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr


def test_one_command_parses_the_inventory_once_and_an_edit_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kastro.respond import gateways

    inventory = tmp_path / "inv"
    shutil.copytree(ROOT / "inventory" / "example", inventory)
    parses = []
    real = gateways._parse_hostvars

    def counted(*args):  # type: ignore[no-untyped-def]
        parses.append(args)
        return real(*args)

    monkeypatch.setattr(gateways, "_parse_hostvars", counted)
    first = isolation_target([str(inventory)], "fileserver")
    again = isolation_target([str(inventory)], "fileserver")
    assert first == again and len(parses) == 1
    hosts = inventory / "kastro_hosts.yml"
    hosts.write_text(hosts.read_text() + "\n")
    import os

    os.utime(hosts, (hosts.stat().st_atime, hosts.stat().st_mtime + 5))
    isolation_target([str(inventory)], "fileserver")
    assert len(parses) == 2
