"""The demo's built-in attack: the lab's attacker scans a sensor, and what reached a person.

`run` sends one bounded vertical scan with the real nmap (`nmap -sS` of ports 1-200, no
retries, 20 s at most), from the lab's own attacker host to a sensor of the same lab, on the
lab's management network where the sensor's monitor captures. It then waits until
Alertmanager on the monitoring host holds the alert and the SOC's mailbox (the lab's exim4)
holds the notification, and prints both, Greek first. Nothing is sent anywhere but between
two hosts this lab created.

`contain` then does what the SOC does next: takes the scan's source from the alert
(KastroEveAlert's src_ip), shows the attacker reaching a gateway, blocks the source on every
gateway with `kastro respond` (audited like any decision) and shows the same probe dropped
and counted. The probe is three pings from the attacker to a gateway of the lab.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kastro.host.suricata import CANARY_SID
from kastro.i18n import t
from kastro.inventory.plan import MONITORING_WEB_PORTS, management_address
from kastro.inventory.project import load_model, read_previous_plan
from kastro.lab.hosts import LabError, container_name, podman, state_dir

# nmap's SYN scan of the first 200 ports, bounded: no retries, no ping, no DNS, 20 s per host.
NMAP_OPTIONS = ("-sS", "-Pn", "-n", "-p", "1-200", "--max-retries", "0", "--host-timeout", "20s")
# Run on the monitoring host, which holds the CA and the password (0640 root:prometheus).
QUERY = """
import base64, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="/etc/prometheus/kastro/tls/ca.crt")
pw = open("/etc/prometheus/kastro/web.password").read().strip()
auth = base64.b64encode(("kastro:" + pw).encode()).decode()
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Basic " + auth})
print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())
"""
SUBJECTS = """
import mailbox, os, sys
from email.header import decode_header, make_header
path = "/var/mail/" + sys.argv[1]
for m in (mailbox.mbox(path) if os.path.exists(path) else []):
    print(make_header(decode_header(m["Subject"])))
"""


@dataclass(frozen=True)
class Targets:
    """Who the attack concerns, from the model and the plan."""

    sensor: str
    monitor: str  # the monitoring host
    address: str  # its management address
    domain: str

    @property
    def host(self) -> str:
        """The address as it goes into a URL (IPv6 in brackets)."""
        return f"[{self.address}]" if ":" in self.address else self.address


@dataclass
class Outcome:
    """What the attack produced: the alerts in Alertmanager and the SOC's mail subjects."""

    targets: Targets
    seconds: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    ids: list[dict[str, Any]] = field(default_factory=list)  # Suricata's EVE alerts of the scan


def _exec(lab: str, host: str, *argv: str) -> str:
    return podman("exec", container_name(lab, host), *argv).stdout


def _eth0_address(lab: str, host: str) -> str:
    return (
        _exec(lab, host, "ip", "-4", "-o", "addr", "show", "dev", "eth0").split()[3].split("/")[0]
    )


def _scan(lab: str, target: str) -> None:
    """The controller's nmap, run inside the attacker's network namespace: its packets leave
    from the attacker's interfaces, along the attacker's routes, like a tool on that host."""
    nmap = shutil.which("nmap")
    if nmap is None:
        raise LabError("το nmap λείπει / nmap is missing: apt install nmap (make deps does)")
    address = str(ipaddress.ip_address(target))  # never anything else on the command line
    pid = podman("inspect", "-f", "{{.State.Pid}}", container_name(lab, "attacker")).stdout.strip()
    if not pid.isdigit() or pid == "0":
        raise LabError(
            t("the attacker of lab '{lab}' is not running; run 'kastro lab up' first", lab=lab)
        )
    subprocess.run(
        ["timeout", "30", "nsenter", f"--net=/proc/{pid}/ns/net", "--", nmap, *NMAP_OPTIONS,
         address],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def targets(inventory: Path) -> Targets:
    """The first sensor and the first monitoring host of the inventory."""
    model = load_model(inventory)[0]
    sensors = sorted(h.name for h in model.hosts if h.role == "sensor")
    monitoring = list(model.municipality.monitoring_hosts) if model.municipality else []
    if not sensors or not monitoring or not model.municipality:
        raise LabError(
            "το inventory χρειάζεται έναν αισθητήρα και ένα kastro_municipality.monitoring_hosts / "
            "the inventory needs a sensor and kastro_municipality.monitoring_hosts"
        )
    address = management_address(read_previous_plan(inventory), monitoring[0])
    return Targets(sensors[0], monitoring[0], address, model.municipality.domain)


def _alerts(lab: str, where: Targets) -> list[dict[str, Any]]:
    url = f"https://{where.host}:{MONITORING_WEB_PORTS[1]}/api/v2/alerts"
    alerts: list[dict[str, Any]] = json.loads(
        _exec(lab, where.monitor, "python3", "-c", QUERY, url)
    )
    return alerts


def run(inventory: Path, lab: str, timeout: float = 120.0) -> Outcome:
    """Scan a sensor from the lab's attacker; wait for the alert and the SOC's e-mail."""
    if not (state_dir(lab) / "inventory.yml").exists():
        raise LabError(t("lab '{lab}' is not up; run 'kastro lab up' first", lab=lab))
    outcome = Outcome(targets(inventory))
    where = outcome.targets
    start = time.monotonic()
    seen = len(ids_alerts(lab, where.sensor))
    _scan(lab, _eth0_address(lab, where.sensor))
    while time.monotonic() - start < timeout:
        outcome.alerts = [
            a for a in _alerts(lab, where)
            if a["labels"].get("alertname") == "KastroAttackDetected"
        ]  # fmt: skip
        outcome.subjects = [
            s for s in _exec(lab, where.monitor, "python3", "-c", SUBJECTS, "soc").splitlines()
            if "KastroAttackDetected" in s
        ]  # fmt: skip
        outcome.ids = ids_alerts(lab, where.sensor)[seen:]
        if outcome.alerts and outcome.subjects:
            break
        time.sleep(3)
    outcome.seconds = time.monotonic() - start
    return outcome


def ids_alerts(lab: str, sensor: str) -> list[dict[str, Any]]:
    """Suricata's alerts on the sensor (role suricata), oldest first; none without Suricata.
    The reload canary (SID 9299999) is no attack and is left out."""
    found = podman(
        "exec", container_name(lab, sensor), "grep", "-F", '"event_type":"alert"',
        "/var/log/suricata/eve.json", check=False,
    ).stdout  # fmt: skip
    records = []
    for line in found.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (record.get("alert") or {}).get("signature_id") != CANARY_SID:
            records.append(record)
    return records


@dataclass
class Containment:
    """The SOC's answer to the scan: the source blocked, the attack path before and after."""

    inventory: Path
    source: str
    target: str
    before: dict[str, Any]
    report: dict[str, Any]


def _scan_source(lab: str, where: Targets, timeout: float) -> str:
    """The scan's source address, from the sensor's EVE alert as Alertmanager holds it."""
    deadline = time.monotonic() + timeout
    while True:
        for alert in _alerts(lab, where):
            labels = alert["labels"]
            if labels.get("alertname") == "KastroEveAlert" and labels.get("detector") == "portscan":
                return str(ipaddress.ip_address(labels["src_ip"]))
        if time.monotonic() > deadline:
            raise LabError(t("no KastroEveAlert with the scan's source in Alertmanager"))
        time.sleep(2)


def save_alerts(lab: str, outcome: Outcome) -> tuple[Path, list[str]]:
    """Alertmanager's alerts saved as the SOC would (`/api/v2/alerts`), and the fingerprints
    of the scan's: the monitor's EVE alerts of the port scan and KastroAttackDetected."""
    alerts = _alerts(lab, outcome.targets)
    path = state_dir(lab) / "alerts.json"
    path.write_text(json.dumps(alerts, ensure_ascii=False, indent=1), encoding="utf-8")
    scan = [
        str(a["fingerprint"]) for a in alerts
        if a["labels"].get("alertname") in ("KastroAttackDetected", "KastroEveAlert")
        and a["labels"].get("detector") == "portscan"
    ]  # fmt: skip
    if not scan:
        raise LabError(t("the scan's alerts are no longer in Alertmanager"))
    return path, sorted(scan)


def _gateway_address(inventory: Path) -> str:
    """A zone address of the gateway in the building with the internet uplink: what the
    attacker (on the internet side) reaches through that gateway's firewall."""
    model = load_model(inventory)[0]
    uplinks = {u.building for u in model.municipality.uplinks} if model.municipality else set()
    planned = read_previous_plan(inventory).get("hosts") or {}
    for _, entry in sorted(planned.items()):
        if entry.get("role") == "gateway" and entry.get("building") in uplinks:
            zones = entry.get("interfaces") or {}
            for zone in sorted(zones, key=lambda z: (z != "servers", z)):
                if zones[zone].get("ipv4"):
                    return str(zones[zone]["ipv4"])
    raise LabError(t("no gateway with an internet uplink and a zone address in the plan"))


def contain(inventory: Path, lab: str, outcome: Outcome, ttl: int = 600) -> Containment:
    """Block the scan's source on every gateway with kastro respond, verified by a probe."""
    from kastro.respond import actions, gateways, metrics, verify
    from kastro.respond.decisions import DecisionStore, operator, parse_target

    source = _scan_source(lab, outcome.targets, timeout=60)
    inventories = [str(inventory), str(state_dir(lab) / "inventory.yml")]
    every = gateways.load(inventories)
    probe = gateways.probe_host(inventories, "attacker")
    target = _gateway_address(inventory)
    # From the scan's own address: the attacker also has one on the internet segment (where
    # published services are tried), which the block is not about.
    before = verify.verify(every, probe, target, "unblock", source).as_dict()
    store = DecisionStore(state_dir(lab) / "respond")
    report = actions.block(
        store,
        every,
        parse_target(source),
        ttl,
        f"demo: port scan of {outcome.targets.sensor} (KastroAttackDetected)",
        operator(),
        lambda action: verify.verify(every, probe, target, action, source).as_dict(),
    )
    metrics.write(store)
    return Containment(inventory, source, target, before, report.as_dict())


def containment_report(done: Containment, lab: str) -> str:
    after = done.report.get("verification") or {}
    drops = ", ".join(f"{g} +{n}" for g, n in sorted(after.get("dropped", {}).items()) if n)
    gates = ", ".join(f"{g}: {status}" for g, status in sorted(done.report["gateways"].items()))
    return "\n".join(
        [
            f"==> περιορισμός / containment: kastro respond block {done.source} --ttl 10m",
            f"  πριν / before: ping {done.target} από τον επιτιθέμενο / from the attacker: "
            f"{done.before.get('answered')}/3 απαντήσεις / answered",
            f"  πύλες / gateways ({done.report['seconds']:.1f} s): {gates}",
            f"  μετά / after: {after.get('answered')}/3 απαντήσεις / answered; "
            f"απορρίψεις / drops: {drops or 'none'}"
            + (" ✓ η επίθεση σταμάτησε / the attack stopped" if after.get("verified") else " ✗"),
            f"  kastro respond list|log -i {done.inventory} -i {state_dir(lab) / 'inventory.yml'} "
            f"--state-dir {state_dir(lab) / 'respond'}",
        ]
    )


def report(outcome: Outcome, lab: str) -> str:
    """The demo's closing text: what was detected, who was told, where to look."""
    where = outcome.targets
    host = where.host
    lines = [f"==> επίθεση / attack: σάρωση θυρών / port scan (nmap -sS), {outcome.seconds:.0f} s"]
    for alert in outcome.alerts:
        notes = alert.get("annotations") or {}
        lines += [f"  {notes.get('summary_el', '')}", f"  {notes.get('summary_en', '')}"]
    lines += [f"  e-mail στο SOC / to the SOC: {s}" for s in outcome.subjects]
    signatures = Counter(
        (a["alert"]["signature_id"], a["alert"]["signature"]) for a in outcome.ids
    )  # fmt: skip
    lines += [
        f"==> Suricata (IDS) στον / on {where.sensor}: SID {sid} {name} ×{n}"
        for (sid, name), n in sorted(signatures.items())
    ]
    prometheus, alertmanager = MONITORING_WEB_PORTS
    lines += [
        f"==> Prometheus:   https://{host}:{prometheus}/",
        f"==> Alertmanager: https://{host}:{alertmanager}/",
        "    χρήστης / user kastro, κωδικός / password: "
        f"~/.kastro/secrets/{where.domain}/monitoring/web.password, CA: ca.crt",
        "    από εδώ / from here: ssh -F "
        f"{state_dir(lab) / 'ssh_config'} -L {prometheus}:{host}:{prometheus} "
        f"-L {alertmanager}:{host}:{alertmanager} {where.monitor}",
    ]
    return "\n".join(lines)
