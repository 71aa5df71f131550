"""Automatic response on the controller: the rule file checked strictly, alerts matched by
detector, signature and severity, the rate caps and the allowlist refuse (audited once), a
decision in force is not taken again, the EVE file is read from where the last run stopped.
No gateway is contacted here (an empty list of gateways); tests/lab/test_fast_response.py
runs the same path against the lab's real gateways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kastro.respond import auto
from kastro.respond.decisions import DecisionStore
from kastro.respond.gateways import Gateway, IsolationTarget

RULES = """
enabled: true
limits: {per_minute: 2, per_hour: 3}
rules:
  - name: synflood-source
    detectors: [synflood]
    min_severity: 2
    action: block
    ttl: 10m
  - name: beacon-host
    signature_ids: [9000031]
    action: isolate
    address: src_ip
    ttl: 1h
"""


def alert(src: str, detector: str = "synflood", severity: int = 1, sid: int = 1) -> dict:
    return {
        "timestamp": "2026-12-05T10:00:00.000000+0000",
        "event_type": "alert",
        "src_ip": src,
        "dest_ip": "10.30.0.42",
        "alert": {"signature_id": sid, "signature": f"KASTRO {detector}", "severity": severity},
        "kastro": {"detector": detector},
    }


@pytest.fixture
def rules(tmp_path: Path) -> auto.Rules:
    path = tmp_path / "rules.yml"
    path.write_text(RULES)
    return auto.load_rules(path)


def responder(tmp_path: Path, rules: auto.Rules, allow: list[str] | None = None) -> auto.Responder:
    gateways = [Gateway("hall-gw", "hall", "192.0.2.1", allowlist=allow or [])] if allow else []
    return auto.Responder(
        DecisionStore(tmp_path / "state"), gateways, rules, lambda a: IsolationTarget(a, [a])
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("rules: [{name: a, detectors: [synflood], ttl: 1h }; x}]", "YAML"),
        ("enabled: true\nrule: []", "unknown key 'rule'"),
        ("rules: [{name: a, ttl: 10m}]", "matches nothing"),
        ("rules: [{name: a, detectors: [x], ttl: '1h }'}]", "rules[0].ttl"),
        ("rules: [{name: 'a b', detectors: [x], ttl: 1h}]", "rules[0].name"),
        ("rules: [{name: a, detectors: [x], ttl: 1h, action: shutdown}]", "rules[0].action"),
        ("rules: [{name: a, detectors: [x], ttl: 1h, address: mac}]", "rules[0].address"),
        ("limits: {per_minute: 0}", "limits.per_minute"),
        (
            "rules: [{name: a, detectors: [x], ttl: 1h}, {name: a, detectors: [y], ttl: 1h}]",
            "unique",
        ),
    ],
)
def test_a_bad_rule_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    with pytest.raises(auto.RuleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        auto.load_rules(path)


def test_off_unless_enabled(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(RULES.replace("enabled: true", "enabled: yes please"))
    assert not auto.load_rules(path).enabled
    path.write_text(RULES.replace("enabled: true\n", ""))
    assert not auto.load_rules(path).enabled


def test_alerts_are_matched_by_detector_signature_and_severity(rules: auto.Rules) -> None:
    assert rules.first_match(alert("203.0.113.9")).name == "synflood-source"
    assert rules.first_match(alert("203.0.113.9", severity=3)) is None  # low: not enough
    assert rules.first_match(alert("10.30.0.9", "beacon", 2, sid=9000031)).name == "beacon-host"
    assert rules.first_match(alert("203.0.113.9", "portscan")) is None
    assert rules.first_match({"event_type": "alert", "alert": "junk"}) is None


def test_decisions_are_audited_and_not_repeated(tmp_path: Path, rules: auto.Rules) -> None:
    r = responder(tmp_path, rules)
    assert r.handle(alert("203.0.113.9"))["outcome"] == "decided"
    assert r.handle(alert("203.0.113.9"))["outcome"] == "already"
    decision = r.store.load()["203.0.113.9/32"]
    assert (
        decision.operator == "auto:synflood-source"
        and 590 <= decision.remaining(decision.created) <= 600
    )
    assert "auto: rule synflood-source: KASTRO synflood" in decision.reason
    isolated = r.handle(alert("10.30.0.9", "beacon", sid=9000031))
    assert isolated["outcome"] == "decided"
    assert r.store.load()["isolate 10.30.0.9/32"].kind == "isolate"


def test_rate_caps_refuse_and_say_so_once(tmp_path: Path, rules: auto.Rules) -> None:
    r = responder(tmp_path, rules)
    outcomes = [r.handle(alert(f"203.0.113.{i}"), now=1e9 + i) for i in range(1, 5)]
    assert [o["outcome"] for o in outcomes] == ["decided", "decided", "refused", "refused"]
    assert "2 automatic decisions a minute" in outcomes[2]["why"]
    r.handle(alert("203.0.113.3"), now=1e9 + 5)  # the same refusal again: audited once
    refused = [x for x in r.store.audit_records() if x["action"] == "auto-refused"]
    assert [x["target"] for x in refused] == ["203.0.113.3", "203.0.113.4"]


def test_an_alert_flood_reads_the_audit_log_once(tmp_path: Path, rules: auto.Rules) -> None:
    """The rate cap's history is read once per round, not once per alert (an alert flood
    against a long audit log was quadratic)."""
    r = responder(tmp_path, rules)
    reads = []
    original = r.store.audit_records

    def counted() -> list:
        reads.append(1)
        return original()

    r.store.audit_records = counted  # type: ignore[method-assign]
    outcomes = [r.handle(alert(f"203.0.113.{i}"), now=1e9 + i) for i in range(1, 40)]
    assert [o["outcome"] for o in outcomes[:3]] == ["decided", "decided", "refused"]
    assert len(reads) == 1
    r.new_round()
    r.handle(alert("203.0.113.200"), now=1e9 + 100)
    assert len(reads) == 2


def test_the_allowlist_and_bad_addresses_are_refused(tmp_path: Path, rules: auto.Rules) -> None:
    r = responder(tmp_path, rules, allow=["10.30.0.48/28"])
    assert "never blocked" in r.handle(alert("10.30.0.50"))["why"]
    assert r.handle(alert("10.0.0.1; reboot"))["outcome"] == "refused"
    assert r.handle(alert(""))["outcome"] == "refused"
    assert r.store.load() == {}


def test_the_eve_file_is_read_from_where_the_last_run_stopped(
    tmp_path: Path, rules: auto.Rules
) -> None:
    eve = tmp_path / "eve.json"
    eve.write_text(json.dumps(alert("203.0.113.1")) + "\n")
    r = responder(tmp_path, rules)
    assert auto.run_once(r, [eve]) == []  # the first run starts at the end: history
    with eve.open("a") as handle:
        handle.write(json.dumps(alert("203.0.113.2")) + "\n" + '{"partial": ')
    outcomes = auto.run_once(r, [eve])
    assert [o.get("target") for o in outcomes] == ["203.0.113.2/32"]
    assert auto.run_once(r, [eve]) == []  # nothing new (the partial line waits)
