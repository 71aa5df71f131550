"""#17: the generated Alertmanager configuration, run by the real Alertmanager on loopback.

amtool checks it and its routing; a real alertmanager (Debian's prometheus-alertmanager)
started on 127.0.0.1 with a webhook sink beside it shows the topology's inhibition at work:
when the school is cut off, its host alert is held back and only the link and the other
building's alert are delivered. Traffic stays on loopback; the daemon is stopped at the end.
"""

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kastro.monitoring import alertmanager
from kastro.monitoring.rules import MonitoringModelError
from tests.alertmanager_helpers import AMTOOL, Sink, alert, api, running_alertmanager, webhook_sink

needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool: apt install prometheus-alertmanager"
)
SETTINGS = {
    "smtp_smarthost": "127.0.0.1:2525",
    "smtp_from": "kastro@kastro.example.gr",
    "smtp_require_tls": False,
    "soc_email": "soc@kastro.example.gr",
    "admin_email": "it@kastro.example.gr",
    "building_contacts": {"school": "director@school.example.gr"},
}


def write_config(tmp_path: Path, settings: dict[str, Any], **timing: str) -> Path:
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    shutil.copy(alertmanager.TEMPLATE, templates)
    data = alertmanager.config(settings, str(templates))
    data["route"].update(timing)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_amtool
def test_amtool_accepts_the_configuration(tmp_path):
    path = write_config(tmp_path, SETTINGS)
    checked = amtool("check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert " - 4 inhibit rules" in checked.stdout and " - 4 receivers" in checked.stdout


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            ["alertname=KastroHostDown", "severity=critical", "building=kep"],
            "kastro-soc,kastro-admin",
        ),
        (["alertname=KastroLinkDegraded", "severity=warning", "link=a-b"], "kastro-admin"),
        (
            ["alertname=KastroHostDown", "severity=critical", "building=school"],
            "kastro-building-school,kastro-soc,kastro-admin",
        ),
        (
            ["alertname=KastroBuildingCutOff", "kastro_inhibit=yes", "building=school"],
            "kastro-inhibit-only",
        ),
    ],
)
def test_routing(tmp_path, labels, receivers):
    path = write_config(tmp_path, SETTINGS)
    routed = amtool("config", "routes", "test", f"--config.file={path}", *labels)
    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.strip() == receivers


@needs_amtool
def test_the_notification_is_greek_first_then_english(tmp_path):
    data = {
        "receiver": "kastro-soc",
        "status": "firing",
        "externalURL": "https://monitor.kastro.example.gr:9093",
        "commonLabels": {
            "alertname": "KastroLinkDown",
            "building": "",
            "municipality": "Dimos Kastrou",
        },
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "KastroLinkDown",
                    "severity": "critical",
                    "link": "library-school",
                },
                "annotations": {
                    "summary_el": "Η ζεύξη library-school είναι εκτός λειτουργίας.",
                    "summary_en": "Link library-school is down.",
                    "runbook": "docs/monitoring.md#kastrolinkdown",
                },
                "startsAt": "2026-12-02T10:00:00Z",
            }
        ],
    }
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    glob = str(alertmanager.TEMPLATE)
    data_arg = f"--template.data={data_file}"
    text = amtool("template", "render", f"--template.glob={glob}",
                  '--template.text={{ template "kastro.text" . }}', data_arg)  # fmt: skip
    assert text.returncode == 0, text.stderr
    body = text.stdout
    assert body.index("εκτός λειτουργίας") < body.index("is down")
    assert "Ζεύξη / Link: library-school" in body and "docs/monitoring.md#kastrolinkdown" in body
    subject = amtool("template", "render", f"--template.glob={glob}",
                     '--template.text={{ template "kastro.subject" . }}', data_arg)  # fmt: skip
    assert subject.stdout.strip() == "[Kastro FIRING 1] KastroLinkDown"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("soc_email", "soc@example.gr\nX-Injected: yes"),
        ("smtp_smarthost", "mail.example.gr"),
        ("webhook_url", "https://soc.example.gr/hook?x={{ .Status }}"),
        ("building_contacts", {'school"} or x': "a@b.gr"}),
    ],
)
def test_a_bad_setting_is_refused_naming_it(tmp_path, field, value):
    with pytest.raises(MonitoringModelError, match=f"monitoring_{field}"):
        alertmanager.config({**SETTINGS, field: value}, str(tmp_path))


@pytest.fixture
def webhook() -> Iterator[str]:
    with webhook_sink() as url:
        yield url


def settle(messages: int) -> None:
    """Wait until the webhook got `messages` notifications (20 s at most), then 2 s more for
    anything else that would arrive."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(Sink.received) < messages:
        time.sleep(0.2)
    time.sleep(2)


@needs_amtool
def test_a_cut_off_building_is_one_notification_with_its_hosts_held_back(tmp_path, webhook):
    settings = {**SETTINGS, "webhook_url": webhook, "building_contacts": {}}
    path = write_config(tmp_path, settings, group_wait="1s", group_interval="1s")
    with running_alertmanager(path, tmp_path / "data") as base:
        api(base, "/api/v2/alerts", [
            alert("KastroBuildingCutOff", building="school", kastro_inhibit="yes", severity="info"),
            alert("KastroLinkDown", link="library-school", severity="critical"),
            alert("KastroHostDown", building="school", host="school-gw", severity="critical"),
            alert("KastroHostDown", building="kep", host="kep-gw", severity="critical"),
        ])  # fmt: skip
        settle(2)
        state = {
            (a["labels"]["alertname"], a["labels"].get("building", "")): a["status"]
            for a in api(base, "/api/v2/alerts")
        }
    assert state[("KastroHostDown", "school")]["state"] == "suppressed"
    assert state[("KastroHostDown", "school")]["inhibitedBy"]
    assert state[("KastroHostDown", "kep")]["state"] == "active"
    delivered = sorted(
        (a["labels"]["alertname"], a["labels"].get("host", a["labels"].get("link", "")))
        for message in Sink.received
        for a in message["alerts"]
    )
    assert delivered == [("KastroHostDown", "kep-gw"), ("KastroLinkDown", "library-school")]


@needs_amtool
def test_a_down_links_own_symptoms_wait_for_it(tmp_path, webhook):
    """KastroLinkDown holds back the same link's lost OSPF neighbours and failed end probes;
    another link's OSPF alert is delivered."""
    settings = {**SETTINGS, "webhook_url": webhook, "building_contacts": {}}
    path = write_config(tmp_path, settings, group_wait="1s", group_interval="1s")
    with running_alertmanager(path, tmp_path / "data") as base:
        api(base, "/api/v2/alerts", [
            alert("KastroLinkDown", link="hall-annex", severity="critical"),
            alert("KastroOspfAdjacencyLost", link="hall-annex", host="hall-gw", building="hall",
                  severity="warning"),
            alert("KastroProbeFailed", link="hall-annex", host="annex-gw", building="annex",
                  end="annex", severity="warning"),
            alert("KastroOspfAdjacencyLost", link="kep-library", host="kep-gw", building="kep",
                  severity="warning"),
        ])  # fmt: skip
        settle(1)
        state = {
            (a["labels"]["alertname"], a["labels"]["link"]): a["status"]["state"]
            for a in api(base, "/api/v2/alerts")
        }
    assert state[("KastroOspfAdjacencyLost", "hall-annex")] == "suppressed"
    assert state[("KastroProbeFailed", "hall-annex")] == "suppressed"
    assert state[("KastroOspfAdjacencyLost", "kep-library")] == "active"
    delivered = sorted(
        (a["labels"]["alertname"], a["labels"]["link"])
        for message in Sink.received
        for a in message["alerts"]
    )
    assert delivered == [("KastroLinkDown", "hall-annex")]  # warnings: the admin's e-mail


@needs_amtool
def test_a_ring_link_that_failed_over_is_one_warning(tmp_path, webhook):
    """KastroLinkFailover (a ring link down, every building still reachable) holds back the
    same link's KastroLinkDown page and its symptoms; it reaches the admin as one warning."""
    settings = {**SETTINGS, "webhook_url": webhook, "building_contacts": {}}
    path = write_config(tmp_path, settings, group_wait="1s", group_interval="1s")
    with running_alertmanager(path, tmp_path / "data") as base:
        api(base, "/api/v2/alerts", [
            alert("KastroLinkFailover", link="kep-library", severity="warning"),
            alert("KastroLinkDown", link="kep-library", severity="critical"),
            alert("KastroOspfAdjacencyLost", link="kep-library", host="kep-gw", building="kep",
                  severity="warning"),
            alert("KastroLinkDown", link="deya-village", severity="critical"),
        ])  # fmt: skip
        settle(1)
        state = {
            (a["labels"]["alertname"], a["labels"]["link"]): a["status"]["state"]
            for a in api(base, "/api/v2/alerts")
        }
    assert state[("KastroLinkDown", "kep-library")] == "suppressed"
    assert state[("KastroOspfAdjacencyLost", "kep-library")] == "suppressed"
    assert state[("KastroLinkFailover", "kep-library")] == "active"
    assert state[("KastroLinkDown", "deya-village")] == "active"
    delivered = sorted(
        (a["labels"]["alertname"], a["labels"]["link"])
        for message in Sink.received
        for a in message["alerts"]
    )
    assert delivered == [("KastroLinkDown", "deya-village")]  # the warning goes by e-mail
