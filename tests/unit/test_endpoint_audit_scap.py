"""The audit rules and the OpenSCAP score/waiver logic (the real scan runs in tests/vm)."""

from __future__ import annotations

import datetime as dt

import pytest

from kastro.endpoint.audit import KEYS, rules_file
from kastro.endpoint.profile import EndpointConfigError
from kastro.lab.scap import ScapError, check_waivers, score

RESULTS = """<?xml version="1.0"?>
<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2"><TestResult>
<rule-result idref="xccdf_org.ssgproject.content_rule_a"><result>pass</result></rule-result>
<rule-result idref="xccdf_org.ssgproject.content_rule_b"><result>pass</result></rule-result>
<rule-result idref="xccdf_org.ssgproject.content_rule_c"><result>fail</result></rule-result>
<rule-result idref="xccdf_org.ssgproject.content_rule_d"><result>error</result></rule-result>
<rule-result idref="xccdf_org.ssgproject.content_rule_e"><result>notapplicable</result>
</rule-result>
<rule-result idref="xccdf_org.ssgproject.content_rule_f"><result>notselected</result></rule-result>
</TestResult></Benchmark>"""


def test_every_rule_has_a_documented_key_and_both_abis() -> None:
    text = rules_file({})
    rules = [line for line in text.splitlines() if " -k " in line and line[0] != "#"]
    keys = {line.rsplit("-k ", 1)[1] for line in rules}
    assert keys == set(KEYS)
    b64 = [line for line in text.splitlines() if "arch=b64" in line]
    assert len(b64) + 1 == text.count("arch=b32") and b64  # stime: b32 only
    assert "-e 2" not in text and text.rstrip().endswith("-e 1")
    assert rules_file({"endpoint_audit_immutable": True}).rstrip().endswith("-e 2")


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"endpoint_audit_watch_extra": "/srv"}, "endpoint_audit_watch_extra"),
        ({"endpoint_audit_watch_extra": ["/srv/a b"]}, "endpoint_audit_watch_extra"),
        ({"endpoint_audit_watch_extra": ["srv"]}, "endpoint_audit_watch_extra"),
        ({"endpoint_audit_watch_extra": ["/srv/../etc"]}, "endpoint_audit_watch_extra"),
        ({"endpoint_audit_watch_extra": ["/srv\n-D"]}, "endpoint_audit_watch_extra"),
        ({"endpoint_audit_immutable": "yes"}, "endpoint_audit_immutable"),
    ],
)
def test_bad_audit_variables_are_refused_by_name(variables: dict, field: str) -> None:
    with pytest.raises(EndpointConfigError, match=field):
        rules_file(variables)


def test_extra_watch_is_a_kastro_key_watch() -> None:
    assert "-w /srv/app/config -p wa -k kastro" in rules_file(
        {"endpoint_audit_watch_extra": ["/srv/app/config"]}
    )


def test_score_counts_applicable_rules_only() -> None:
    result = score(RESULTS)
    assert result.applicable == 4
    assert result.percent == 50.0
    assert result.failed == ("c", "d")


def test_score_refuses_empty_or_broken_results() -> None:
    with pytest.raises(ScapError):
        score("<Benchmark xmlns='http://checklists.nist.gov/xccdf/1.2'/>")
    with pytest.raises(ScapError):
        score("not xml")


def _waiver(rule: str, review_by: str = "2027-06-01") -> dict[str, str]:
    return {"rule": rule, "reason": "r", "compensating_control": "c", "owner": "o",
            "review_by": review_by}  # fmt: skip


def test_waivers_unwaived_expired_unused() -> None:
    today = dt.date(2026, 12, 6)
    check = check_waivers(["c", "d"], [_waiver("c"), _waiver("x")], today)
    assert check.unwaived == ("d",)
    assert check.unused == ("x",)
    assert not check.ok
    check = check_waivers(["c"], [_waiver("c", "2026-12-05")], today)
    assert check.expired == ("c",)
    assert check_waivers(["c"], [_waiver("c")], today).ok
    with pytest.raises(ScapError, match="owner"):
        check_waivers(["c"], [{**_waiver("c"), "owner": ""}], today)


def test_one_waiver_may_cover_several_rules() -> None:
    today = dt.date(2026, 12, 6)
    group = {**_waiver("a"), "rules": ["a", "b"]}
    del group["rule"]
    assert check_waivers(["a", "b"], [group], today).ok
    assert check_waivers(["a"], [group], today).unused == ("b",)
    with pytest.raises(ScapError, match="rule"):
        check_waivers(["a"], [{**group, "rules": []}], today)
