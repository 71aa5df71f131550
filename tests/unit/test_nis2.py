"""#21: NIS2 incidents: the deadline engine across changes of the clocks and month ends, the
hash-chained log, report drafts checked against their schema in both languages, bad input
refused with nothing written, and an export that rebuilds byte-identically."""

import calendar
import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from kastro.cli import main
from kastro.nis2 import alerts as nis2_alerts
from kastro.nis2 import deadlines, drafts
from kastro.nis2.deadlines import ATHENS, UTC
from kastro.nis2.log import IncidentLog, LogError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
SCAN = "3f2a9c0d4b1e7a65"
RULE = "00000000000000a1"

# Instants from 2020 to 2035, to the second: every change of the clocks and every month end.
instants = st.integers(
    int(dt.datetime(2020, 1, 1, tzinfo=UTC).timestamp()),
    int(dt.datetime(2035, 1, 1, tzinfo=UTC).timestamp()),
).map(lambda s: dt.datetime.fromtimestamp(s, UTC))


@settings(max_examples=3000, deadline=None)
@given(instants)
def test_hours_are_elapsed_time_and_a_month_is_the_next_months_same_local_time(aware):
    due = {d.stage: d.at for d in deadlines.schedule(aware)}
    assert due["early_warning"] - aware == dt.timedelta(hours=24)
    assert due["notification"] - aware == dt.timedelta(hours=72)
    start = due["notification"].astimezone(ATHENS)
    end = due["progress"].astimezone(ATHENS)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    last_day = calendar.monthrange(year, month)[1]
    if start.day > last_day:  # no such day: the end of the last day of that month
        assert end.replace(tzinfo=None) == dt.datetime(year, month, last_day) + dt.timedelta(1)
        return
    assert (end.year, end.month, end.day) == (year, month, start.day)
    # The same wall time, unless it does not exist that day (then the moment the clocks jump,
    # at most an hour off); never more than 31 days and an hour, never less than 28 less one.
    wall = dt.timedelta(hours=start.hour, minutes=start.minute, seconds=start.second)
    got = dt.timedelta(hours=end.hour, minutes=end.minute, seconds=end.second)
    assert got == wall or abs(got - wall) <= dt.timedelta(hours=1)
    assert dt.timedelta(days=28, hours=-1) <= end - start <= dt.timedelta(days=31, hours=1)


@settings(max_examples=2000, deadline=None)
@given(instants, st.integers(0, 40 * 86400))
def test_a_later_start_never_gives_an_earlier_deadline(first, gap):
    """Except a start in the hour the clocks repeat in autumn, second time round: its local
    time is earlier than the first round's, and so is its deadline (by less than an hour; the
    deadline follows the local time a person reads, the stricter reading)."""
    second = first + dt.timedelta(seconds=gap)
    repeated = second.astimezone(ATHENS).fold == 1
    slack = dt.timedelta(hours=1) if repeated else dt.timedelta(0)
    assert deadlines.add_month(first) <= deadlines.add_month(second) + slack


@pytest.mark.parametrize(
    ("notified_local", "due_local"),
    [
        # 31 January: February has no 31st -> the end of its last day (leap and common years).
        ("2027-01-31 10:00", "2027-03-01 00:00 EET"),
        ("2028-01-31 10:00", "2028-03-01 00:00 EET"),
        ("2027-01-28 23:59", "2027-02-28 23:59 EET"),
        # Across the spring change (last Sunday of March 2027: the 28th, 03:00 -> 04:00):
        # the same local time in EEST, 30 days and 23 hours later.
        ("2027-02-28 03:30", "2027-03-28 04:00 EEST"),
        ("2027-03-01 09:00", "2027-04-01 09:00 EEST"),
        ("2027-09-30 23:59", "2027-10-30 23:59 EEST"),
        ("2027-10-01 12:00", "2027-11-01 12:00 EET"),
        ("2027-12-31 23:00", "2028-01-31 23:00 EET"),
    ],
)
def test_month_ends_and_changes_of_the_clocks(notified_local, due_local):
    notified = deadlines.parse_time(notified_local)
    assert deadlines.athens(deadlines.add_month(notified)) == due_local


def test_a_month_ending_in_the_repeated_autumn_hour_takes_its_first_occurrence():
    # 25 October 2026: 04:00 EEST -> 03:00 EET, so 03:30 happens twice; the first is 00:30 UTC.
    due = deadlines.add_month(deadlines.parse_time("2026-09-25T03:30+03:00"))
    assert deadlines.iso(due) == "2026-10-25T00:30:00Z"
    assert deadlines.athens(due) == "2026-10-25 03:30 EEST"


def test_the_24_hours_of_an_early_warning_are_hours_even_when_the_clocks_change():
    aware = deadlines.parse_time("2027-03-27 10:00")  # EET; the clocks jump that night
    early = deadlines.schedule(aware)[0]
    assert deadlines.athens(early.at) == "2027-03-28 11:00 EEST"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2027-03-28 03:30", "the clocks change"),  # does not exist in Athens
        ("2027-10-31 03:30", "the clocks change"),  # happens twice
        ("yesterday", "is not a time"),
        ("2027-13-01 10:00", "is not a time"),
    ],
)
def test_a_local_time_that_is_missing_twice_or_not_a_time_is_refused(text, words):
    with pytest.raises(deadlines.DeadlineError, match=words):
        deadlines.parse_time(text)
    assert deadlines.parse_time("2027-10-31T03:30+03:00") < deadlines.parse_time(
        "2027-10-31T03:30+02:00"
    )


def test_a_final_report_is_due_a_month_after_the_notification_or_after_handling():
    aware = deadlines.parse_time("2027-05-03 09:00")
    notified = deadlines.parse_time("2027-05-05 16:00")
    closed_early = deadlines.parse_time("2027-05-20 12:00")
    due = {d.stage: d for d in deadlines.schedule(aware, notified, closed_early)}
    assert set(due) == {"early_warning", "notification", "final"}
    assert deadlines.athens(due["final"].at) == "2027-06-05 16:00 EEST"
    closed_late = deadlines.parse_time("2027-07-10 12:00")
    due = {d.stage: d for d in deadlines.schedule(aware, notified, closed_late)}
    assert deadlines.athens(due["progress"].at) == "2027-06-05 16:00 EEST"
    assert deadlines.athens(due["final"].at) == "2027-08-10 12:00 EEST"


# --- the log ---------------------------------------------------------------------------------


def test_a_changed_removed_or_inserted_line_breaks_the_chain_there(tmp_path):
    log = IncidentLog(tmp_path)
    for n in range(4):
        log.append([{"incident": "INC-2027-0001", "event": "note", "data": {"n": n}}])
    lines = log.path.read_text().splitlines()
    assert len(log.records()) == 4
    variants = {
        "changed": [*lines[:2], lines[2].replace('"n":2', '"n":7'), lines[3]],
        "removed": [lines[0], lines[2], lines[3]],
        "inserted": [lines[0], lines[1], lines[1], lines[2], lines[3]],
        "reordered": [lines[1], lines[0], lines[2], lines[3]],
    }
    for name, text in variants.items():
        log.path.write_text("\n".join(text) + "\n")
        with pytest.raises(LogError, match=r"line [123]") as caught:
            log.records()
        assert "hash chain" in str(caught.value), name
    log.path.write_text("\n".join(lines) + "\n")
    assert len(log.records()) == 4
    log.path.write_text("\n".join(lines) + "\n{not json\n")
    with pytest.raises(LogError, match="line 5: not JSON"):
        log.records()


# --- the commands ----------------------------------------------------------------------------


def alerts_file(directory: Path) -> Path:
    alerts = [
        {
            "fingerprint": SCAN,
            "startsAt": "2026-12-06T10:00:00Z",
            "labels": {
                "alertname": "KastroEveAlert", "host": "sensor1", "building": "cityhall",
                "src_ip": "203.0.113.66", "dest_ip": "10.20.2.10", "signature_id": "9000001",
                "signature": "KASTRO port scan", "detector": "portscan",
            },
            "annotations": {
                "summary_el": "Ο αισθητήρας sensor1 εντόπισε: KASTRO port scan",
                "summary_en": "Sensor sensor1 detected: KASTRO port scan",
                "eve": json.dumps({"tls": {"sni": "c2.example.net"},
                                   "fileinfo": {"sha256": "ab" * 32}}),
            },
        },
        {
            "fingerprint": RULE,
            "startsAt": "2026-12-06T10:01:00Z",
            "labels": {"alertname": "KastroMalwareFound", "host": "intranet"},
            "annotations": {"summary_el": "κακόβουλο", "summary_en": "malware"},
        },
    ]  # fmt: skip
    path = directory / "alerts.json"
    path.write_text(json.dumps(alerts))
    return path


def incident(state: Path, *argv: str) -> int:
    return main(["incident", argv[0], "-i", str(EXAMPLE), "--state-dir", str(state), *argv[1:]])


def everything(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_an_alert_opens_an_incident_with_schema_valid_drafts_in_both_languages(tmp_path, capsys):
    state = tmp_path / "incidents"
    alerts = alerts_file(tmp_path)
    assert incident(state, "open", "--from-alert", SCAN, "--alerts", str(alerts),
                    "--aware", "2026-11-02T10:05Z") == 0  # fmt: skip
    shown = capsys.readouterr().out
    assert "INC-2026-0001" in shown and "2026-11-03 12:05 EET" in shown  # 24 h later, Athens
    folder = state / "drafts" / "INC-2026-0001"
    schema = drafts.schema()
    for language in ("el", "en"):
        body = json.loads((folder / f"early_warning.{language}.json").read_text())
        jsonschema.validate(body, schema)
        assert body["deadline"]["utc"] == "2026-11-03T10:05:00Z"
        assert body["affected"]["buildings"][0]["name"] == "cityhall"
        assert [h["name"] for h in body["affected"]["hosts"]] == ["fileserver"]
        assert body["affected"]["hosts"][0]["description"] == "Samba file server"
        assert body["iocs"]["addresses"] == ["203.0.113.66"]  # what is known, from the start
        assert body["affected"]["services"] == [
            {
                "name": "file-sharing",
                "host": "fileserver",
                "description": "SMB (Windows file shares)",
            },
            {"name": "printing", "host": "fileserver", "description": "IPP and raw printing"},
        ]
        assert "assessment" not in body
        page = (folder / f"early_warning.{language}.html").read_text()
        assert body["stage_title"] in page and "fileserver" in page
    assert json.loads((folder / "early_warning.el.json").read_text())["stage_title"] == (
        "Έγκαιρη προειδοποίηση"
    )
    assert (state / "log.jsonl").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700

    assert incident(state, "update", "INC-2026-0001", "--disruption", "severe",
                    "--people-affected", "4000", "--from-alert", RULE,
                    "--alerts", str(alerts)) == 0  # fmt: skip
    body = json.loads((folder / "notification.en.json").read_text())
    jsonschema.validate(body, schema)
    assert body["iocs"] == {
        "addresses": ["203.0.113.66"], "signature_ids": ["9000001"],
        "domains": ["c2.example.net"], "sha256": ["ab" * 32],
    }  # fmt: skip
    assert body["assessment"]["significant"] is True
    assert body["assessment"]["severity"] == "high"
    assert sorted(h["name"] for h in body["affected"]["hosts"]) == ["fileserver", "intranet"]
    el = json.loads((folder / "notification.el.json").read_text())
    assert el["assessment"]["severity"] == "υψηλή" and el["suspected_malicious"] == "υπάρχει υποψία"

    metrics = (state / "nis2.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    stages = {s.labels["stage"] for s in families["kastro_nis2_deadline_timestamp_seconds"].samples}
    assert stages == {"early_warning", "notification", "progress"}

    assert incident(state, "sent", "INC-2026-0001", "--stage", "early_warning",
                    "--at", "2026-11-02T18:00Z") == 0  # fmt: skip
    assert 'stage="early_warning"' not in (state / "nis2.prom").read_text()
    assert incident(state, "close", "INC-2026-0001", "--root-cause", "port scan from the internet",
                    "--mitigation", "source blocked on every gateway",
                    "--at", "2026-11-04T09:00Z") == 0  # fmt: skip
    final = json.loads((folder / "final.el.json").read_text())
    jsonschema.validate(final, schema)
    assert final["ongoing"] is False and final["mitigation"] == "source blocked on every gateway"
    assert [e["event"] for e in final["timeline"]] == [
        "έγινε γνωστό το συμβάν", "υποβλήθηκε η έγκαιρη προειδοποίηση", "το συμβάν αντιμετωπίστηκε",
    ]  # fmt: skip
    assert incident(state, "verify") == 0
    assert "chain intact" in capsys.readouterr().out


def test_an_address_ansible_reaches_a_host_at_names_that_host_not_an_ioc(tmp_path):
    """The lab's (or a municipality's) management addresses are outside the plan: a second
    -i inventory's ansible_host names the host, as kastro respond reads it."""
    overlay = tmp_path / "overlay.yml"
    overlay.write_text("all:\n  hosts:\n    sensor1: {ansible_host: 192.168.77.5}\n"
                       "    stranger: {ansible_host: 192.168.77.6}\n")  # fmt: skip
    alerts = [{"fingerprint": SCAN, "startsAt": "2026-11-02T10:00:00Z",
               "labels": {"alertname": "KastroEveAlert", "host": "sensor1",
                          "src_ip": "198.51.100.7", "dest_ip": "192.168.77.5"},
               "annotations": {"summary_el": "σάρωση", "summary_en": "scan"}}]  # fmt: skip
    (tmp_path / "alerts.json").write_text(json.dumps(alerts))
    state = tmp_path / "incidents"
    assert main(["incident", "open", "-i", str(EXAMPLE), "-i", str(overlay), "--state-dir",
                 str(state), "--alerts", str(tmp_path / "alerts.json"), "--from-alert", SCAN,
                 "--aware", "2026-11-02T10:05Z"]) == 0  # fmt: skip
    body = json.loads((state / "drafts/INC-2026-0001/early_warning.en.json").read_text())
    assert [h["name"] for h in body["affected"]["hosts"]] == ["sensor1"]
    assert body["affected"]["services"] == [
        {"name": "metrics", "host": "sensor1", "description": "Prometheus node exporter"}
    ]
    assert body["iocs"]["addresses"] == ["198.51.100.7"]


def test_the_export_bundle_rebuilds_byte_identically(tmp_path):
    state = tmp_path / "incidents"
    alerts = alerts_file(tmp_path)
    assert incident(state, "open", "--from-alert", SCAN, "--alerts", str(alerts)) == 0
    evidence = tmp_path / "scan.pcap"
    evidence.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(100))
    assert incident(state, "attach", "INC-2026-0001", str(evidence), "--kind", "pcap") == 0
    first, second = tmp_path / "one.tar", tmp_path / "two.tar"
    assert incident(state, "export", "INC-2026-0001", "--output", str(first)) == 0
    assert incident(state, "open", "--title", "another incident") == 0  # not in the bundle
    assert incident(state, "export", "INC-2026-0001", "--output", str(second)) == 0
    assert first.read_bytes() == second.read_bytes()
    import hashlib
    import tarfile

    with tarfile.open(first) as tar:
        names = tar.getnames()
        member = tar.extractfile(
            f"INC-2026-0001/artefacts/{hashlib.sha256(evidence.read_bytes()).hexdigest()}"
        )
        assert member is not None and member.read() == evidence.read_bytes()
    assert "INC-2026-0001/log.jsonl" in names and "INC-2026-0001/manifest.json" in names


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["open", "--from-alert", "ffffffffffffffff", "--alerts", "ALERTS"], "no such alert"),
        (["open", "--from-alert", "nope;rm", "--alerts", "ALERTS"], "16-hex-digit fingerprint"),
        (["open", "--from-alert", SCAN], "needs --alerts"),
        (["open", "--from-alert", SCAN, "--alerts", "/nonexistent.json"], "curl"),
        (["open", "--title", "x", "--aware", "2099-01-01T00:00Z"], "in the future"),
        (["open", "--title", "x", "--aware", "2027-03-28 03:30"], "the clocks change"),
        (["open", "--title", "bad\x1btitle"], "control characters"),
        (["open"], "--title"),
        (["update", "INC-2026-0042", "--disruption", "none"], "no such incident"),
        (["update", "42", "--disruption", "none"], "not an incident id"),
        (["close", "INC-2026-0042", "--root-cause", "x", "--mitigation", "y"], "no such incident"),
        (["sent", "INC-2026-0001", "--stage", "final"], "owes no such report"),
        (["update", "INC-2026-0001", "--disruption", "none", "--people-affected", "-3"], "from 0"),
    ],
)
def test_bad_input_is_refused_with_the_fix_and_nothing_is_written(tmp_path, capsys, argv, words):
    state = tmp_path / "incidents"
    alerts = alerts_file(tmp_path)
    assert incident(state, "open", "--title", "first", "--aware", "2026-12-01T10:00Z") == 0
    before = everything(state)
    capsys.readouterr()
    argv = [str(alerts) if a == "ALERTS" else a for a in argv]
    assert incident(state, *argv) == 1
    assert words in capsys.readouterr().err
    assert everything(state) == before


def test_a_tampered_log_stops_every_command_and_says_where(tmp_path, capsys):
    state = tmp_path / "incidents"
    assert incident(state, "open", "--title", "first") == 0
    log = state / "log.jsonl"
    log.write_text(log.read_text().replace("first", "fist"))
    before = everything(state)
    assert incident(state, "open", "--title", "second") == 1
    assert "line 1" in capsys.readouterr().err
    assert everything(state) == before


# --- the article 21 map ----------------------------------------------------------------------


def test_the_article_21_map_covers_a_to_j_with_counts_from_the_model(tmp_path, capsys):
    from kastro.inventory.model import UNTRUSTED_MEDIA
    from kastro.inventory.project import validate_inventory

    model = validate_inventory(EXAMPLE).model
    state = tmp_path / "incidents"
    assert incident(state, "open", "--title", "a drill") == 0
    capsys.readouterr()
    assert main(["inventory", "article21", "-i", str(EXAMPLE), "--format", "json",
                 "--state-dir", str(state)]) == 0  # fmt: skip
    found = {m["article"]: m for m in json.loads(capsys.readouterr().out)}
    assert list(found) == [f"21(2)({letter})" for letter in "abcdefghij"]
    assert {m["status"] for m in found.values()} <= {"evidenced", "partial", "manual"}
    untrusted = [link for link in model.links.values() if link.medium in UNTRUSTED_MEDIA]
    assert f"{len(untrusted)} of {len(untrusted)}" in found["21(2)(h)"]["evidence"][0]
    assert found["21(2)(h)"]["status"] == "evidenced"
    assert "NIS2 incidents: 1; αλυσίδα hash ακέραιη" in " ".join(found["21(2)(b)"]["evidence"])
    assert "links with a supplier: 1 of 7" in found["21(2)(d)"]["evidence"][0]
    continuity = " ".join(found["21(2)(c)"]["evidence"])
    assert "datasets backed up: 2 (controller, shares)" in continuity
    assert "append-only copy on vault" in continuity
    assert not any("kastro_backup" in item for item in found["21(2)(c)"]["manual"])
    assert found["21(2)(j)"]["status"] == "partial"  # no second factor yet: said, not hidden
    # A tampered incident log is reported, not counted.
    log = state / "log.jsonl"
    log.write_text(log.read_text().replace("a drill", "a dril"))
    assert main(["inventory", "article21", "-i", str(EXAMPLE), "--format", "json",
                 "--state-dir", str(state)]) == 0  # fmt: skip
    found = {m["article"]: m for m in json.loads(capsys.readouterr().out)}
    assert "BROKEN" in " ".join(found["21(2)(b)"]["evidence"])
    assert found["21(2)(b)"]["status"] == "manual"
    page = tmp_path / "article21.html"
    assert main(["inventory", "article21", "-i", str(EXAMPLE), "-o", str(page),
                 "--state-dir", str(state)]) == 0  # fmt: skip
    text = page.read_text()
    assert "Κρυπτογραφία" in text and "Multi-factor authentication" in text


def test_a_monitoring_host_that_does_not_answer_keeps_the_incident_and_exits_2(tmp_path, capsys):
    """--publish after the write: a monitoring host that cannot be reached is named, the
    incident and its drafts stay written, and `publish` says the same on its own."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on (closed again at once)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    overlay = tmp_path / "overlay.yml"
    overlay.write_text(
        f"all:\n  hosts:\n    monitor: {{ansible_host: 127.0.0.1, ansible_port: {port}}}\n"
    )
    state = tmp_path / "incidents"
    common = ["-i", str(EXAMPLE), "-i", str(overlay), "--state-dir", str(state)]
    assert main(["incident", "open", *common, "--title", "lost laptop", "--publish"]) == 2
    err = capsys.readouterr().err
    assert "written, not published" in err and "monitor: not reachable over SSH" in err
    assert len(list((state / "drafts").glob("INC-*/early_warning.el.json"))) == 1
    assert 'stage="early_warning"' in (state / "nis2.prom").read_text()
    assert main(["incident", "publish", *common]) == 1
    assert "run 'kastro incident publish' again" in capsys.readouterr().err


@pytest.mark.parametrize("alertname", ["KastroEveAlert", "KastroIdsAlert", "KastroAttackDetected"])
def test_a_sensors_detection_names_its_target_not_the_sensor(alertname):
    plan = nis2_alerts.Plan(
        {"hosts": {"sensor1": {"ipv4": "10.20.3.107", "building": "cityhall"},
                   "intranet": {"ipv4": "10.20.2.10", "building": "cityhall"}}},
        ["10.20.0.0/16"],
    )  # fmt: skip
    labels = {"alertname": alertname, "host": "sensor1", "dest_ip": "10.20.2.10"}
    assert nis2_alerts.facts([{"labels": labels}], plan).hosts == {"intranet"}
