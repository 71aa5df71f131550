"""The monitoring stack on real hosts (lab-small, site.yml converged once for every lab test):
web is the monitoring host (kastro_municipality.monitoring_hosts). Every target the model
implies is up; Prometheus and Alertmanager answer only over TLS with the password, only on the
management address, and not at all to the attacker; Prometheus delivers to Alertmanager.

The module's name sorts before test_lab_network.py, whose last test removes the shared lab."""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import shlex
import subprocess
import time
import urllib.parse
from collections.abc import Callable

import jsonschema
import pytest
import testinfra
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kastro.cli import main
from kastro.controller.model_vars import model_variables
from kastro.inventory.plan import MONITORING_WEB_PORTS
from kastro.lab import attack, hosts, switch
from kastro.monitoring import prometheus
from kastro.monitoring.dashboards import queries
from kastro.nis2 import drafts
from kastro.nis2.deadlines import ATHENS
from tests.lab import browser
from tests.lab.conftest import INVENTORY, LAB, run_playbook
from tests.lab.test_hardening import MAX_EXPOSURE, exposure

pytestmark = pytest.mark.lab

QUERY = attack.QUERY  # the HTTPS API from the monitoring host, which has the CA and password
# A client without the password, from anywhere: prints the HTTP status or the error's kind.
STATUS = """
import ssl, sys, urllib.error, urllib.request
ctx = ssl._create_unverified_context()
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", "Basic a2FzdHJvOndyb25n")  # kastro:wrong
try:
    print(urllib.request.urlopen(req, context=ctx, timeout=3).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception as exc:
    print(type(exc).__name__)
"""


def ssh(name: str):
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(hosts.state_dir(LAB) / "ssh_config"))


def web_address() -> str:
    rows = ssh("web").check_output("ss -Hltn 'sport = :9090'").splitlines()
    assert len(rows) == 1, rows
    return rows[0].split()[3].rsplit(":", 1)[0]


def api(path: str) -> dict:
    url = f"https://{web_address()}:9090{path}"
    out = ssh("web").check_output(f"python3 -c {shlex.quote(QUERY)} {shlex.quote(url)}")
    return json.loads(out)


def status(source: str, url: str, wrong_password: bool = False) -> str:
    argv = f"python3 -c {shlex.quote(STATUS)} {shlex.quote(url)}" + (" x" if wrong_password else "")
    return ssh(source).check_output(argv).strip()


def expected_targets() -> set[tuple[str, str]]:
    """(job, host) of every target the model implies, from the compiler the role uses."""
    variables = model_variables(INVENTORY)
    found = set()
    for name, groups in prometheus.target_files(variables).items():
        job = name.removesuffix(".json")
        found |= {(job, group["labels"]["host"]) for group in groups}
    return found | {("prometheus", "web"), ("alertmanager", "web")}


def test_site_yml_again_changes_nothing(lab):
    """Idempotence of every role on real hosts, the monitoring and node_exporter roles included
    (their Molecule-style second converge: they need the model and several hosts, so they are
    tested in this shared lab rather than in scenarios of their own)."""
    proc = run_playbook("playbooks/site.yml", INVENTORY, lab)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = proc.stdout.partition("PLAY RECAP")[2]
    rows = [line for line in recap.splitlines() if " : ok=" in line]
    assert len(rows) == 5 and all(" changed=0 " in row for row in rows), recap + "".join(
        changed_tasks(proc.stdout)
    )


def changed_tasks(output: str) -> list[str]:
    """'TASK [...]' and its 'changed: [host]' lines: what a second run changed, and where."""
    out, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed: ["):
            out.append(f"\n{task}\n  {line}")
    return out


def test_every_target_the_model_implies_is_up(lab):
    wanted = expected_targets()
    assert ("node", "annex-gw") in wanted and ("blackbox-links", "annex-gw") in wanted
    deadline = time.monotonic() + 90
    while True:
        targets = api("/api/v1/targets?state=active")["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["host"]): t for t in targets}
        down = {k: t["lastError"] for k, t in health.items() if t["health"] != "up"}
        if (set(health) == wanted and not down) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert set(health) == wanted
    assert not down, down
    print(f"\n{len(health)} targets up: {sorted(health)}")


def test_every_link_end_answers_the_monitoring_hosts_pings(lab):
    """blackbox_exporter's ICMP probes of both ends of each link succeed: the gateways forward
    the monitoring host's pings (a policy that does not name them must not make every
    KastroProbeFailed fire)."""
    deadline = time.monotonic() + 60
    while True:
        result = api('/api/v1/query?query=probe_success{job="blackbox-links"}')["data"]["result"]
        failing = [r["metric"]["instance"] for r in result if r["value"][1] != "1"]
        if (result and not failing) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert len(result) == 2 and not failing, result


def test_every_series_carries_who_and_where(lab):
    result = api("/api/v1/query?query=up")["data"]["result"]
    assert result
    for series in result:
        labels = series["metric"]
        assert labels["municipality"] == "Dimos Mikrou", labels
        assert labels["building"] and labels["host"] and labels["role"], labels


def test_the_rules_and_the_topology_are_loaded(lab):
    groups = api("/api/v1/rules")["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"KastroHostDown", "KastroLinkDown", "KastroAttackDetected"} <= names
    assert "kastro-topology" in {group["name"] for group in groups}
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_prometheus_delivers_to_alertmanager_over_tls(lab):
    active = api("/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert [a["url"] for a in active] == [f"https://{web_address()}:9093/api/v2/alerts"]


@pytest.mark.parametrize("port", [9090, 9093])
def test_the_web_interfaces_need_tls_and_the_password(lab, port):
    """From probe (the management zone, which the firewall admits): no password, a wrong one
    and plain HTTP are all refused; the monitoring host's own client with the password gets in."""
    https = f"https://{web_address()}:{port}/-/ready"
    assert status("probe", https) == "401"
    assert status("probe", https, wrong_password=True) == "401"
    assert status("probe", f"http://{web_address()}:{port}/-/ready") in {
        "400",
        "RemoteDisconnected",
    }


def test_the_internet_side_reaches_municipal_addresses_inside_the_lab_only(lab):
    """The attacker's packets to a municipal address go out on its internet segment, never
    through its default route (podman's NAT, out of the lab): a test must not send them to a
    network this machine does not own."""
    for name in ("attacker", "home"):
        route = ssh(name).check_output(f"ip -o route get {web_address()}")
        assert " dev wan " in f"{route} ", route


@pytest.mark.parametrize("port", [9090, 9093])
def test_the_attacker_cannot_reach_the_web_interfaces(lab, port):
    """Neither at the planned address (through the internet segment) nor at the address the
    lab's controller uses (the daemons do not listen there)."""
    for address in (
        web_address(),
        ssh("web").check_output("ip -4 -o addr show dev eth0").split()[3].split("/")[0],
    ):
        answer = status("attacker", f"https://{address}:{port}/-/ready")
        assert answer in {"TimeoutError", "URLError", "timeout", "ConnectionRefusedError"}, (
            address,
            answer,
        )


def test_listeners_are_the_management_address_and_loopback_only(lab):
    web = ssh("web")
    rows = web.check_output("ss -Hltn").splitlines()
    listening = {row.split()[3] for row in rows}
    address = web_address()
    assert {f"{address}:9090", f"{address}:9093", "127.0.0.1:9115"} <= listening
    assert not [a for a in listening if re.search(r":(9090|9093|9094|9115)$", a)
                and not a.startswith((address, "127.0.0.1"))]  # fmt: skip


@pytest.mark.parametrize(
    "unit", ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"]
)
def test_the_daemons_are_least_privilege(lab, unit):
    web = ssh("web")
    score = exposure(web, unit)
    print(f"\n{unit}: systemd-analyze security {score}")
    assert score <= MAX_EXPOSURE
    user = web.check_output(f"systemctl show -p User --value {unit}")
    assert user == "prometheus"
    caps = web.check_output(f"systemctl show -p CapabilityBoundingSet --value {unit}")
    assert caps.strip() == ("cap_net_raw" if "blackbox" in unit else ""), caps


def test_secrets_on_the_host_are_readable_by_the_daemons_only(lab):
    web = ssh("web")
    for path in ("/etc/prometheus/kastro/tls/server.key", "/etc/prometheus/kastro/web.password"):
        f = web.file(path)
        assert (f.user, f.group, f.mode) == ("root", "prometheus", 0o640), path
    assert web.file("/etc/prometheus/kastro").mode == 0o750


@pytest.fixture(scope="module")
def scan(lab) -> attack.Outcome:
    """The demo's scan, once for the tests that follow it."""
    return attack.run(INVENTORY, LAB, timeout=90)


def test_the_demo_attack_reaches_alertmanager_within_60_seconds(scan):
    """Attack to person (kastro lab attack, what make demo ends with): the lab's attacker scans
    the sensor once, the monitor raises an EVE alert and counts it, Prometheus fires
    KastroAttackDetected, Alertmanager holds it with the sensor's building and both summaries,
    and the SOC's mailbox receives it."""
    outcome = scan
    print(f"\nscan to Alertmanager and the SOC's mailbox: {outcome.seconds:.1f} s")
    assert outcome.alerts, "no KastroAttackDetected in Alertmanager after 90 s"
    alert = next(a for a in outcome.alerts if a["labels"].get("detector") == "portscan")
    assert alert["labels"]["host"] == "probe" and alert["labels"]["building"] == "hall"
    assert alert["labels"]["severity"] == "critical"
    assert "εντόπισε επίθεση: portscan" in alert["annotations"]["summary_el"]
    assert alert["annotations"]["runbook"] == "docs/monitoring.md#kastroattackdetected"
    assert outcome.subjects, "no notification in the SOC's mailbox after 90 s"
    assert outcome.seconds <= 60, f"{outcome.seconds:.1f} s from scan to e-mail (goal 60 s)"
    # Suricata, beside the monitor, saw the same scan (what make demo prints next to it).
    assert {a["alert"]["signature_id"] for a in outcome.ids} >= {9200010}, outcome.ids[:3]


def test_the_attack_becomes_a_nis2_early_warning_and_its_clock_reaches_prometheus(scan, tmp_path):
    """#21's drill: the scan's alerts, saved from Alertmanager as the SOC would, open an
    incident (kastro incident open, what make demo ends with): the early warning names the
    scanned sensor, its building and services, the attacker's address as an IOC and the
    24-hour deadline, schema-valid in Greek and English. Its deadline metric, read by the
    monitoring host's node_exporter once `kastro incident publish` put it there (root's, 0644),
    reaches Prometheus as the time left (the rule's)."""
    started = time.monotonic()
    saved, fingerprints = attack.save_alerts(LAB, scan)
    state = tmp_path / "incidents"
    overlay = hosts.state_dir(LAB) / "inventory.yml"  # the sensor's address in the lab
    argv = ["incident", "open", "-i", str(INVENTORY), "-i", str(overlay), "--alerts", str(saved),
            "--state-dir", str(state)]  # fmt: skip
    for fingerprint in fingerprints:
        argv += ["--from-alert", fingerprint]
    assert main(argv) == 0
    seconds = time.monotonic() - started
    print(f"\nalerts to the early-warning drafts (el, en): {seconds:.1f} s")
    source = next(
        a["labels"]["src_ip"]
        for a in json.loads(saved.read_text())
        if a["labels"].get("alertname") == "KastroEveAlert"
        and a["labels"].get("detector") == "portscan"
    )
    folder = state / "drafts" / f"INC-{datetime.datetime.now(ATHENS).year}-0001"
    for language in ("el", "en"):
        body = json.loads((folder / f"early_warning.{language}.json").read_text())
        jsonschema.validate(body, drafts.schema())
        assert [b["name"] for b in body["affected"]["buildings"]] == ["hall"]
        assert [h["name"] for h in body["affected"]["hosts"]] == ["probe"]
        assert body["affected"]["services"] == [
            {"name": "ssh", "host": "probe", "description": "administration"}
        ]
        assert body["iocs"]["addresses"] == [source]
        aware = datetime.datetime.fromisoformat(body["became_aware"]["utc"])
        due = datetime.datetime.fromisoformat(body["deadline"]["utc"])
        assert due - aware == datetime.timedelta(hours=24)
        assert {a["fingerprint"] for a in body["alerts"]} == set(fingerprints)
    assert seconds < 30

    started = time.monotonic()
    assert main(["incident", "publish", *argv[2:6], "--state-dir", str(state)]) == 0
    web = ssh("web")
    published = web.file("/var/lib/prometheus/node-exporter/kastro_nis2.prom")
    assert published.user == "root" and published.mode == 0o644
    assert published.content_string == (state / "nis2.prom").read_text()
    try:
        query = 'kastro_nis2_deadline_seconds_remaining{stage="early_warning"}'
        deadline = time.monotonic() + 120
        while True:
            result = api(f"/api/v1/query?query={urllib.parse.quote(query)}")["data"]["result"]
            if result or time.monotonic() > deadline:
                break
            time.sleep(5)
        print(f"publish to Prometheus's recording rule: {time.monotonic() - started:.1f} s")
        assert result, "the deadline metric did not reach Prometheus in 120 s"
        left = float(result[0]["value"][1])
        assert 86400 - 600 < left <= 86400, left
    finally:
        web.check_output("rm -f /var/lib/prometheus/node-exporter/kastro_nis2.prom")


def plug(name: str, port: str, bridge: str, address: str, mac: str = "") -> str:
    """A device on a zone's switch: a namespace with one port on the zone's bridge; its MAC."""
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    for argv in (
        ["ip", "netns", "add", name],
        ["ip", "link", "add", port, "netns", switch.namespace(LAB), "type", "veth", "peer",
         "name", "eth0", "netns", name],
        ["ip", "-n", switch.namespace(LAB), "link", "set", port, "master", bridge, "up"],
        ["ip", "-n", name, "addr", "add", address, "dev", "eth0"],
        *([["ip", "-n", name, "link", "set", "eth0", "address", mac]] if mac else []),
        ["ip", "-n", name, "link", "set", "eth0", "up"],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)
    shown = subprocess.run(["ip", "-n", name, "-j", "link", "show", "eth0"], check=True,
                           capture_output=True, text=True).stdout  # fmt: skip
    return str(json.loads(shown)[0]["address"])


def test_the_gateways_sweep_reports_a_stranger_and_a_registered_device_that_left():
    """#21 reconciliation on the lab's network: hall-gw's kastro-discover (its timer's unit,
    started now) finds a device the register lacks, plugged into the hall's servers zone, with
    its address and MAC; the registered printer (lab-small's devices, by MAC) and web server
    (by planned address) are known. Both devices unplugged: nothing unknown, and the printer
    is missing (lab-small: discovery_missing_after_hours 0). The unit keeps to its sandbox."""
    plan = model_variables(str(INVENTORY))["kastro_plan"]
    network = ipaddress.ip_network(plan["zones"]["hall.servers"]["ipv4"])
    stranger_address = str(network.broadcast_address - 2)
    printer_address = str(network.broadcast_address - 3)
    taken = {str(h.get("ipv4")) for h in plan["hosts"].values()}
    assert not {stranger_address, printer_address} & taken
    bridge = switch.bridge_names(hosts.lab_topology(INVENTORY))["zone:hall.servers"]
    gateway = ssh("hall-gw")
    metrics = "/var/lib/prometheus/node-exporter/kastro_discover.prom"
    devices = {f"{LAB}-stranger": "", f"{LAB}-printer": "02:4b:00:00:00:20"}
    try:
        mac = plug(f"{LAB}-stranger", "kdstrange0", bridge,
                   f"{stranger_address}/{network.prefixlen}")  # fmt: skip
        plug(f"{LAB}-printer", "kdprinter0", bridge, f"{printer_address}/{network.prefixlen}",
             devices[f"{LAB}-printer"])  # fmt: skip
        started = time.monotonic()
        gateway.check_output("systemctl start kastro-discover.service")
        print(f"\nhall-gw's sweep of its zones: {time.monotonic() - started:.1f} s")
        text = gateway.file(metrics).content_string
        assert f'zone="hall.servers",address="{stranger_address}",mac="{mac}"' in text, text
        known = re.search(
            r'kastro_discover_devices\{zone="hall.servers",state="known"\} (\d+)', text
        )
        assert known and int(known.group(1)) >= 2, text  # web by address, the printer by MAC
        assert 'kastro_discover_device_missing{device="lab-printer"} 0' in text, text
        assert "kastro_discover_success 1" in text
    finally:
        for name in devices:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    gateway.check_output("systemctl start kastro-discover.service")
    text = gateway.file(metrics).content_string
    assert 'kastro_discover_devices{zone="hall.servers",state="unknown"} 0' in text, text
    assert 'kastro_discover_device_missing{device="lab-printer"} 1' in text, text
    assert 'kastro_discover_device_missing{device="web"} 0' in text, text
    assert exposure(gateway, "kastro-discover") <= MAX_EXPOSURE


@browser.needs_chromium
def test_a_browser_shows_the_scan_alert_and_every_target_up(lab):
    """What the SOC sees in Prometheus' own web pages, in a real browser (chromium), right
    after the scan: the alert firing with its building and runbook, every target up.

    Debian's Alertmanager ships without its web application (its page says so; building it
    needs the Elm compiler from the internet): the SOC reads Alertmanager's alerts in the
    e-mail, the webhook, `amtool` or the SOC dashboard, and the firing rules here."""
    with browser.tunnel(MONITORING_WEB_PORTS[0]) as port, browser.chromium() as chrome:
        chrome.get(f"https://127.0.0.1:{port}/classic/alerts")
        firing = re.compile(r"KastroAttackDetected \([1-9]\d* active\)")
        text = browser.page_text(chrome, 20, lambda t: firing.search(t) is not None)
        assert firing.search(text), text[:3000]
        chrome.find_element("xpath", "//button[@title='show annotations']").click()
        header = "//tr[contains(@class, 'alert_header')][contains(., 'KastroAttackDetected')]"
        chrome.find_element("xpath", header).click()
        text = browser.page_text(
            chrome, 10, lambda t: "docs/monitoring.md#kastroattackdetected" in t
        )
        assert 'building="hall"' in text and 'detector="portscan"' in text, text[:4000]
        assert "docs/monitoring.md#kastroattackdetected" in text, text[:4000]
        assert "εντόπισε επίθεση: portscan" in text, text[:4000]  # the Greek summary
        chrome.save_screenshot(str(hosts.state_dir(LAB) / "prometheus-alerts.png"))

        chrome.get(f"https://127.0.0.1:{port}/classic/targets")
        text = browser.page_text(chrome, 20, lambda t: "blackbox-links (" in t)
        counts = dict(
            (job, (int(up), int(total)))
            for job, up, total in re.findall(r"^([a-z-]+) \((\d+)/(\d+) up\)", text, re.M)
        )
        wanted = {job for job, _ in expected_targets()} | {"prometheus", "alertmanager"}
        assert set(counts) == wanted, (counts, text[:3000])
        assert all(up == total for up, total in counts.values()), counts
        chrome.save_screenshot(str(hosts.state_dir(LAB) / "prometheus-targets.png"))


# Reads the mbox of one mailbox on the monitoring host: each message's subject and decoded text.
READ_MAIL = """
import json, mailbox, sys
from email.header import decode_header, make_header
out = []
for message in mailbox.mbox(sys.argv[1]):
    body = message.get_payload(decode=True) if not message.is_multipart() else b""
    for part in message.walk() if message.is_multipart() else []:
        if part.get_content_type() == "text/plain":
            body = part.get_payload(decode=True)
    out.append({"to": message["To"], "subject": str(make_header(decode_header(message["Subject"]))),
                "text": (body or b"").decode("utf-8", "replace")})
print(json.dumps(out))
"""


def mails(box: str) -> list[dict]:
    web = ssh("web")
    if not web.file(f"/var/mail/{box}").exists:
        return []
    argv = f"python3 -c {shlex.quote(READ_MAIL)} /var/mail/{box}"
    return json.loads(web.check_output(argv))


def test_the_scan_reaches_the_soc_by_e_mail_in_greek_and_english(lab):
    """The SOC's mailbox (the lab's exim4 on the monitoring host) holds the notification of the
    scan above, to the SOC's address, Greek first, then English."""
    deadline = time.monotonic() + 30
    found: list[dict] = []
    while time.monotonic() < deadline and not found:
        found = [m for m in mails("soc") if "KastroAttackDetected" in m["subject"]]
        if not found:
            time.sleep(3)
    assert found, f"no notification in /var/mail/soc: {mails('soc')}"
    mail = found[0]
    assert mail["to"] == "soc@mikro.example.gr"
    assert mail["subject"].startswith("[Kastro FIRING")
    text = mail["text"]
    greek = text.index("εντόπισε επίθεση: portscan")
    english = text.index("detected an attack: portscan")
    assert greek < english, text
    assert "Κτίριο / Building: hall" in text and "docs/monitoring.md#kastroattackdetected" in text


def alertmanager_alerts(name: str) -> list[dict]:
    """Alertmanager's alerts of one name, from the monitoring host."""
    url = f"https://{web_address()}:9093/api/v2/alerts?filter=alertname%3D%22{name}%22"
    out = ssh("web").check_output(f"python3 -c {shlex.quote(QUERY)} {shlex.quote(url)}")
    return json.loads(out)


def test_each_eve_alert_reaches_alertmanager_with_its_signature_and_addresses(lab):
    """The SOC sees each alert, not only a counter: kastro-forward on the sensor sent the scan's
    EVE record to Alertmanager (TLS, the monitoring password) as KastroEveAlert."""
    attacker = ssh("attacker").check_output("ip -4 -o addr show dev eth0").split()[3].split("/")[0]
    deadline = time.monotonic() + 60
    eve: list[dict] = []
    while time.monotonic() < deadline and not eve:
        eve = [
            a for a in alertmanager_alerts("KastroEveAlert")
            if a["labels"].get("detector") == "portscan" and a["labels"].get("src_ip") == attacker
        ]  # fmt: skip
        if not eve:
            time.sleep(3)
    assert eve, "no KastroEveAlert from the probe's forwarder"
    labels = eve[0]["labels"]
    assert labels["host"] == "probe" and labels["building"] == "hall"
    assert "scan" in labels["signature"].lower() and labels["signature_id"]
    assert json.loads(eve[0]["annotations"]["eve"])["event_type"] == "alert"


def test_the_forwarder_is_least_privilege_and_the_password_root_only(lab):
    probe = ssh("probe")
    assert probe.service("kastro-forward").is_running
    score = exposure(probe, "kastro-forward")
    print(f"\nkastro-forward: systemd-analyze security {score}")
    assert score <= MAX_EXPOSURE
    assert probe.check_output("systemctl show -p User --value kastro-forward") == "kastro-forward"
    secret = probe.file("/etc/kastro/forward.password")
    assert (secret.user, secret.group, secret.mode) == ("root", "kastro-forward", 0o640)
    # The monitor, which parses hostile packets, cannot read it.
    assert probe.run("runuser -u kastro-monitor -- cat /etc/kastro/forward.password").rc != 0


def eve_lines(host, path: str) -> set[str]:
    out = host.run(f"cat {shlex.quote(path)}")
    return set(out.stdout.splitlines()) if out.rc == 0 else set()


def wait_shipped(probe, web, seconds: int = 90) -> tuple[set[str], set[str]]:
    """The sensor's EVE lines and the collector's copy, once the copy holds them all."""
    deadline = time.monotonic() + seconds
    while True:
        sent = eve_lines(probe, "/var/log/kastro/eve.json")
        got = eve_lines(web, "/var/log/kastro/events/probe/eve.json")
        if (sent and sent <= got) or time.monotonic() > deadline:
            return sent, got
        time.sleep(2)


def test_the_sensors_events_reach_the_collector_unchanged(lab):
    """Every line of the probe's EVE file (the scans above included) is in the collector's file
    for the probe, byte for byte: rsyslog over TLS, client certificate, port 6514."""
    probe, web = ssh("probe"), ssh("web")
    sent, got = wait_shipped(probe, web)
    assert sent, "the probe wrote no EVE line"
    assert sent <= got, f"{len(sent - got)} of {len(sent)} lines not at the collector"
    assert any(json.loads(line).get("event_type") == "alert" for line in got)
    listeners = web.check_output("ss -Hltn 'sport = :6514'").split()
    assert f"{web_address()}:6514" in listeners, listeners


def test_a_collector_outage_and_a_killed_shipper_lose_no_event(lab):
    """The collector is down (as in a WAN cut) while the sensor writes 200 more events, and the
    sensor's shipper is killed outright meanwhile; once the collector is back, every line is
    there. (The events are appended as the monitor's own user: the monitor rightly suppresses a
    repeat of the same scan for 5 minutes, and this test is about the shipping.)"""
    probe, web = ssh("probe"), ssh("web")
    append = (
        "import json, sys\n"
        "with open('/var/log/kastro/eve.json', 'a') as f:\n"
        "    for n in range(int(sys.argv[1]), int(sys.argv[2])):\n"
        "        f.write(json.dumps({'event_type': 'alert', 'outage_test': n,"
        " 'alert': {'signature': 'Δοκιμή διακοπής'}}, ensure_ascii=False) + '\\n')\n"
    )
    run = f"runuser -u kastro-monitor -- python3 -c {shlex.quote(append)}"
    web.check_output("systemctl stop kastro-collector")
    try:
        probe.check_output(f"{run} 0 100")
        time.sleep(3)
        probe.check_output("systemctl kill -s KILL kastro-ship")
        probe.check_output(f"{run} 100 200")
        time.sleep(3)
        queued = probe.check_output("ls /var/lib/kastro-ship")
        print(f"\ncollector down, shipper killed and restarted; its state: {queued!r}")
    finally:
        web.check_output("systemctl start kastro-collector")
    start = time.monotonic()
    sent, got = wait_shipped(probe, web, seconds=120)
    print(f"collector back: all {len(sent)} lines there in {time.monotonic() - start:.0f} s")
    assert sent <= got, f"lost {len(sent - got)} lines"
    assert sum('"outage_test"' in line for line in got) >= 200


def wait_line(web, path: str, text: str, seconds: int = 90) -> str:
    """The collector's file once a line holds `text` (or what it holds at the deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        found = web.run(f"grep -F -- {shlex.quote(text)} {shlex.quote(path)}").stdout
        if found or time.monotonic() > deadline:
            return found
        time.sleep(2)


@pytest.mark.parametrize("name", ["files", "annex-gw", "hall-gw", "probe", "web"])
def test_every_hosts_logins_and_privilege_use_reach_the_collector(lab, name):
    """From the journal of every managed host (the server behind the radio link, both gateways
    connecting from whichever address their route picks, the sensor, the collector itself): a
    record of the authpriv facility and sshd's record of this test's own key login land in the
    collector's auth.log for that host, with the time they were logged. A local user who
    claims to be sshd is shown as what the journal saw: that user's id and program."""
    host, web = ssh(name), ssh("web")
    marker = f"kastro-lab-{name}-{time.time_ns()}"
    # Alive while journald reads its /proc entry (a sender gone by then is shown as exe=?).
    forge = (
        "import syslog, sys, time\n"
        "syslog.openlog('sshd', syslog.LOG_PID, syslog.LOG_AUTHPRIV)\n"
        "syslog.syslog(syslog.LOG_NOTICE, 'Accepted password for root ' + sys.argv[1])\n"
        "time.sleep(2)\n"
    )
    host.check_output(f"runuser -u nobody -- python3 -c {shlex.quote(forge)} {marker}")
    path = f"/var/log/kastro/events/{name}/auth.log"
    line = wait_line(web, path, marker)
    # The name it claimed (sshd), then what the journal knows of the sender: nobody, and its
    # program where journald may read it (not in a podman container: no CAP_SYS_PTRACE; the
    # test VM checks a real host's journal records it).
    expected = (
        rf"^20\d\d-\d\d-\d\dT\S+ sshd\[\d+\]: Accepted password for root {marker} "
        r"\(exe=(\?|/usr/bin/python3[.\d]*) uid=65534\)$"
    )
    assert re.match(expected, line.strip()), line
    login = wait_line(web, path, "Accepted publickey for").strip().splitlines()[-1]
    assert re.search(r"\(exe=(\?|/usr/sbin/sshd) uid=0\)$", login), f"{path}: {login!r}"
    mode = web.check_output(f"stat -c '%a %U' {shlex.quote(path)}")
    assert mode == "600 kastro-collector", mode  # the collector alone (and root) reads them


def test_the_collector_measures_each_senders_share_of_its_disk(lab):
    """kastro-collector-usage's own unit, run now: every host that sent its logs has its bytes
    in the text file, Prometheus has them under the sender's name (the KastroEventFlood
    alert's input), and the unit reads sizes with one capability and no network (0.9 SAFE in
    the lab)."""
    web = ssh("web")
    wait_line(web, "/var/log/kastro/events/files/auth.log", "Accepted publickey for")
    web.check_output("systemctl start kastro-collector-usage.service")
    text = web.check_output("cat /var/lib/prometheus/node-exporter/kastro_collector_usage.prom")
    assert "kastro_collector_usage_success 1" in text, text
    for name in ("files", "web"):
        assert re.search(rf'kastro_collector_sender_bytes{{sender="{name}"}} [1-9]', text), text
    deadline = time.monotonic() + 60
    while True:
        result = api("/api/v1/query?query=kastro_collector_sender_bytes")["data"]["result"]
        senders = {r["metric"].get("sender") for r in result}
        if {"files", "web"} <= senders or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert {"files", "web"} <= senders, result
    assert all(r["metric"].get("host") == "web" for r in result), result  # the collector's own
    score = exposure(web, "kastro-collector-usage")
    print(f"\nkastro-collector-usage: systemd-analyze security {score}")
    assert score <= MAX_EXPOSURE
    caps = web.check_output(
        "systemctl show -p CapabilityBoundingSet --value kastro-collector-usage"
    )
    assert caps.strip() == "cap_dac_override", caps


def test_only_the_managed_hosts_may_send_events_and_the_daemons_are_least_privilege(lab):
    """The attacker cannot reach the port (firewall); the monitoring host itself, with the CA but
    no client certificate the collector admits, is refused by TLS; both rsyslog instances run
    as their own users in the OK band, the keys readable by them alone."""
    probe, web = ssh("probe"), ssh("web")
    target = f"{web_address()}:6514"
    reach = ssh("attacker").run(f"timeout 5 bash -c 'echo > /dev/tcp/{target.replace(':', '/')}'")
    assert reach.rc != 0, "the attacker reached the collector's port"
    refused = web.run(
        f"echo '<14>1 - probe kastro-eve - - - {{\"forged\":1}}' | timeout 5 openssl s_client"
        f" -quiet -connect {target} -CAfile /etc/kastro/collector/ca.crt"
    )
    time.sleep(1)
    assert "forged" not in web.run("cat /var/log/kastro/events/probe/eve.json").stdout, refused
    for host, unit, user, key in (
        (probe, "kastro-ship", "kastro-ship", "/etc/kastro/ship/client.key"),
        (web, "kastro-collector", "kastro-collector", "/etc/kastro/collector/server.key"),
    ):
        score = exposure(host, unit)
        print(f"\n{unit}: systemd-analyze security {score}")
        assert score <= MAX_EXPOSURE
        assert host.check_output(f"systemctl show -p User --value {unit}") == user
        f = host.file(key)
        assert (f.user, f.group, f.mode) == ("root", user, 0o640), key


# Dashboards whose metrics this lab cannot have; their queries are checked by promtool only.
EMPTY_IN_THIS_LAB = {
    "kastro-vpn": "lab-small has no teleworkers, so no VPN server",
    "kastro-backup": "lab-small has no kastro_backup (molecule/backup tests the metrics)",
}


def test_every_dashboard_query_returns_data_from_the_labs_prometheus(lab):
    """Each panel of the generated Grafana dashboards (kastro dashboards), its building
    variable set to the city hall, asked of the real Prometheus after the lab's traffic."""
    missing = []
    for uid, title, expr in queries("hall"):
        if uid in EMPTY_IN_THIS_LAB:
            continue
        result = api(f"/api/v1/query?query={urllib.parse.quote(expr)}")["data"]["result"]
        if not result:
            missing.append((uid, title, expr))
    assert not missing, missing


def active_alerts() -> dict[tuple[str, str], dict]:
    """Alertmanager's alerts by (alertname, host or link)."""
    url = f"https://{web_address()}:9093/api/v2/alerts"
    out = ssh("web").check_output(f"python3 -c {shlex.quote(QUERY)} {shlex.quote(url)}")
    alerts = json.loads(out)
    return {
        (a["labels"]["alertname"], a["labels"].get("host") or a["labels"].get("link", "")): a
        for a in alerts
    }


CUT = (
    "nft add table inet labcut; "
    "nft add chain inet labcut in '{ type filter hook input priority -300; }'; "
    "nft add chain inet labcut out '{ type filter hook output priority -300; }'; "
    "nft add rule inet labcut in iifname l-annex drop; "
    "nft add rule inet labcut out oifname l-annex drop"
)


def test_a_cut_link_is_one_notification_and_restoring_it_resolves(lab):
    """The radio link to the annex fades (hall-gw drops everything on it): the SOC gets one
    notification, KastroLinkDown; the annex's host and exporter alerts and the link's own
    symptoms are held back (suppressed, inhibited by the topology's KastroBuildingCutOff and by
    KastroLinkDown). Restoring the link resolves it. Runs last here: it disturbs the lab."""
    before = {m["subject"] for m in mails("soc")}
    hall = ssh("hall-gw")
    assert hall.run(CUT).rc == 0
    start = time.monotonic()
    try:
        alerts: dict = {}
        while time.monotonic() - start < 240:
            alerts = active_alerts()
            host_down = alerts.get(("KastroHostDown", "annex-gw"))
            if ("KastroLinkDown", "hall-annex") in alerts and host_down:
                break
            time.sleep(5)
        print(f"\nlink cut: LinkDown and the annex's HostDown in {time.monotonic() - start:.0f} s")
        assert alerts[("KastroLinkDown", "hall-annex")]["status"]["state"] == "active"
        held = alerts[("KastroHostDown", "annex-gw")]["status"]
        assert held["state"] == "suppressed" and held["inhibitedBy"], held
        time.sleep(15)  # the SOC route's group_wait, and anything else that would arrive
        new = [m for m in mails("soc") if m["subject"] not in before]
        assert [m["subject"] for m in new] == ["[Kastro FIRING 1] KastroLinkDown"], new
        assert "Ζεύξη / Link: hall-annex" in new[0]["text"]
    finally:
        hall.run("nft delete table inet labcut")
    restored = time.monotonic()
    while time.monotonic() - restored < 180 and ("KastroLinkDown", "hall-annex") in active_alerts():
        time.sleep(5)
    print(f"link restored: LinkDown resolved in {time.monotonic() - restored:.0f} s")
    assert ("KastroLinkDown", "hall-annex") not in active_alerts()


# A web server for the probe tests: HTTP on 80 and HTTPS on 443 of the given address, with
# the given certificate, answering 200 to every GET; stopped by `timeout` at the latest.
WEB_SERVER = """
import http.server, ssl, sys, threading
import os
address, cert, key = sys.argv[1:4]
with open("/run/kastro-test-web.pid", "w") as pid:
    pid.write(str(os.getpid()))
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
plain = http.server.ThreadingHTTPServer((address, 80), Answer)
secure = http.server.ThreadingHTTPServer((address, 443), Answer)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
secure.socket = context.wrap_socket(secure.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
secure.serve_forever()
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except OSError as exc:
    print(type(exc).__name__)
"""


def self_signed(host: str, days: int) -> tuple[str, str]:
    """A certificate (PEM) valid for `days` and its key, as a municipal server might have."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def probe_values(query: str) -> dict[str, float]:
    result = api(f"/api/v1/query?query={urllib.parse.quote(query)}")["data"]["result"]
    return {
        r["metric"].get("instance", r["metric"].get("host", "")): float(r["value"][1])
        for r in result
    }


def wait_for(query: str, wanted: Callable[[dict[str, float]], bool], seconds: int = 90) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        values = probe_values(query)
        if wanted(values) or time.monotonic() > deadline:
            return values
        time.sleep(5)


def test_the_monitoring_host_probes_published_web_services_through_the_firewalls(lab):
    """files (annex) publishes web to the annex staff only. The monitoring host (web, in the
    hall) probes its HTTP and HTTPS through hall-gw, annex-gw and files' own firewall, which
    admit exactly those probes: a real web server answers both (probe_success 1), the
    certificate's end date is read (10 days: KastroCertificateExpiring material). From the
    attacker's side: the sensor in the hall, which the policy does not name, cannot connect."""
    address = model_variables(INVENTORY)["kastro_plan"]["hosts"]["files"]["ipv4"]
    files = ssh("files")
    cert, key = self_signed("files", days=10)
    files.check_output(
        f"umask 077; printf %s {shlex.quote(cert)} > /run/kastro-test-web.crt; "
        f"printf %s {shlex.quote(key)} > /run/kastro-test-web.key"
    )
    files.check_output(
        f"setsid -f timeout 300 python3 -c {shlex.quote(WEB_SERVER)} {address} "
        "/run/kastro-test-web.crt /run/kastro-test-web.key >/dev/null 2>&1"
    )
    try:
        query = 'probe_success{job="blackbox-services", host="files"}'
        values = wait_for(query, lambda v: len(v) == 2 and all(x == 1 for x in v.values()))
        assert values == {f"http://{address}:80/": 1.0, f"https://{address}:443/": 1.0}, values
        expiry = probe_values(
            '(probe_ssl_earliest_cert_expiry{job="blackbox-services", host="files"} - time())'
            " / 86400"
        )
        assert 9.9 < expiry[f"https://{address}:443/"] <= 10, expiry
        for port in (80, 443):
            connect = f"python3 -c {shlex.quote(CONNECT)} {address} {port}"
            assert ssh("web").check_output(connect) == "open"
            assert ssh("probe").check_output(connect) in {"TimeoutError", "timeout"}
    finally:
        files.run("kill $(cat /run/kastro-test-web.pid); rm -f /run/kastro-test-web.*")
    values = wait_for(query, lambda v: all(x == 0 for x in v.values()))
    assert values == {f"http://{address}:80/": 0.0, f"https://{address}:443/": 0.0}, values


def test_every_host_reports_pending_updates_and_reboot_required(lab):
    """apt_info (prometheus-node-exporter-collectors) on every managed host, sandboxed; a
    reboot-required flag reaches Prometheus (KastroRebootRequired material)."""
    managed = {"hall-gw", "annex-gw", "web", "probe", "files"}
    values = wait_for("max by (host) (node_reboot_required)", lambda v: set(v) == managed)
    assert values == dict.fromkeys(managed, 0.0), values
    assert set(probe_values("count by (host) (apt_upgrades_pending)")) == managed
    files = ssh("files")
    score = exposure(files, "prometheus-node-exporter-apt")
    print(f"\nprometheus-node-exporter-apt: systemd-analyze security {score}")
    assert score <= MAX_EXPOSURE
    smartmon = files.run("systemctl is-enabled prometheus-node-exporter-smartmon.timer")
    assert smartmon.stdout.strip() == "disabled"  # the package's other collectors are off
    files.check_output("touch /run/reboot-required")
    try:
        files.check_output("systemctl start prometheus-node-exporter-apt.service")
        values = wait_for(
            'max by (host) (node_reboot_required{host="files"})', lambda v: v.get("files") == 1
        )
        assert values == {"files": 1.0}, values
    finally:
        files.run("rm -f /run/reboot-required")
        files.run("systemctl start prometheus-node-exporter-apt.service")
