"""The article 21 map: each cybersecurity risk-management measure of NIS2 article 21(2)
(a)-(j), with what Kastro can show for it, counted from the model and the controller's state,
and what it cannot (listed as manual: a person keeps that evidence).

  evidenced   Kastro builds and tests the measure from this inventory
  partial     Kastro covers part of it; the rest (named) is manual or missing in the model
  manual      outside what Kastro does: policies, training, contracts on paper
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kastro.inventory.model import UNTRUSTED_MEDIA, Model
from kastro.inventory.register import fields


@dataclass
class Measure:
    article: str
    title_el: str
    title_en: str
    status: str = "manual"
    evidence: list[str] = field(default_factory=list)  # facts, Greek / English in one line
    manual: list[str] = field(default_factory=list)  # what a person must keep
    commands: list[str] = field(default_factory=list)  # how to see the evidence again


@dataclass(frozen=True)
class Facts:
    """What the controller holds besides the model (optional: a fresh checkout has none)."""

    alert_rules: int = 0
    incidents: int = 0
    incident_log_ok: bool | None = None  # None: no log yet


def _status(done: bool, manual: list[str]) -> str:
    if done and not manual:
        return "evidenced"
    return "partial" if done else "manual"


def _a_risk(model: Model, _facts: Facts) -> Measure:
    m = Measure(
        "21(2)(a)",
        "Πολιτικές ανάλυσης κινδύνου και ασφάλειας πληροφοριακών συστημάτων",
        "Risk analysis and information system security policies",
    )
    risky = [r for r in model.policy if r.accept_risk]
    m.evidence = [
        f"ζώνες / zones: {len(model.zones)}; κανόνες πολιτικής / policy rules: "
        f"{len(model.policy)} (ό,τι δεν επιτρέπεται απορρίπτεται / default deny)",
        f"αποδεκτοί κίνδυνοι με αιτιολογία / risks accepted with a reason: {len(risky)}",
    ]
    m.manual = [
        "η γραπτή πολιτική ασφάλειας και η ανάλυση κινδύνου / the written security "
        "policy and risk analysis"
    ]
    m.commands = ["kastro show policy -i INV", "kastro show matrix -i INV"]
    m.status = _status(bool(model.policy), m.manual)
    return m


def _b_incidents(model: Model, facts: Facts) -> Measure:
    m = Measure("21(2)(b)", "Διαχείριση περιστατικών", "Incident handling")
    municipality = model.municipality
    watched = bool(municipality and municipality.monitoring_hosts)
    none = "κανένας / none"
    hosts = ", ".join(municipality.monitoring_hosts) if municipality and watched else none
    collector = (municipality.event_collector if municipality else "") or none
    chain = {
        None: "",
        True: "; αλυσίδα hash ακέραιη / hash chain intact",
        False: "; ΣΠΑΣΜΕΝΗ αλυσίδα hash / hash chain BROKEN",
    }[facts.incident_log_ok]
    m.evidence = [
        f"κανόνες ειδοποίησης ελεγμένοι με promtool / alert rules tested with promtool: "
        f"{facts.alert_rules}",
        f"παρακολούθηση / monitoring hosts: {hosts}",
        f"συλλογή συμβάντων / event collector: {collector}",
        f"συμβάντα NIS2 / NIS2 incidents: {facts.incidents}{chain}",
    ]
    m.manual = (
        [] if watched else ["ορίστε kastro_municipality.monitoring_hosts / name monitoring hosts"]
    )
    m.commands = [
        "kastro incident list -i INV",
        "kastro incident verify -i INV",
        "kastro respond list",
    ]
    m.status = _status(watched and facts.incident_log_ok is not False, m.manual)
    return m


def _c_continuity(model: Model, _facts: Facts) -> Measure:
    m = Measure(
        "21(2)(c)",
        "Επιχειρησιακή συνέχεια, αντίγραφα ασφαλείας, ανάκαμψη",
        "Business continuity, backups, disaster recovery",
    )
    degree: dict[str, int] = {b: 0 for b in model.buildings}
    for link in model.links.values():
        for end in link.ends:
            degree[end] = degree.get(end, 0) + 1
    redundant = sorted(b for b, n in degree.items() if n >= 2)
    m.evidence = [
        f"κτίρια με δύο ή περισσότερες διαδρομές / buildings with two or more paths: "
        f"{len(redundant)} of {len(model.buildings)}",
        *_backup_evidence(model),
    ]
    m.manual = [
        *(
            []
            if model.backup
            else [
                "αντίγραφα ασφαλείας: ορίστε kastro_backup (docs/backup.md) / backups: "
                "describe them in kastro_backup (docs/backup.md)"
            ]
        ),
        "σχέδιο επιχειρησιακής συνέχειας, με τα μετρημένα RPO/RTO (benchmarks/README.md) / "
        "the business continuity plan, with the measured RPO/RTO (benchmarks/README.md)",
    ]
    m.commands = ["kastro show graph -i INV topology.svg", "kastro backup status -i INV"]
    m.status = _status(bool(redundant) or bool(model.backup), m.manual)
    return m


def _backup_evidence(model: Model) -> list[str]:
    """What kastro_backup makes true: datasets, RPOs, drills, the append-only server."""
    backup = model.backup
    if backup is None:
        return []
    datasets = [*backup.datasets.values(), *([backup.controller] if backup.controller else [])]
    rpo = max((d.rpo_hours for d in datasets), default=0)
    return [
        f"σύνολα δεδομένων με αντίγραφα / datasets backed up: {len(datasets)} "
        f"({', '.join(sorted(d.name for d in datasets))}); μέγιστο RPO / longest RPO: {rpo} h",
        f"αμετάβλητο αντίγραφο (append-only) στον {backup.server}; ασκήσεις επαναφοράς / "
        f"append-only copy on {backup.server}; restore drills: {backup.drill}; έλεγχος κάθε "
        f"κομματιού / every chunk checked every {backup.check_days} days",
        "RTO μετρημένο από κάθε άσκηση (kastro_backup_drill_duration_seconds, kastro backup "
        "status); αναφορά: 2 GiB αρχείων και βάση 500 MB σε 19.8 s (benchmarks/README.md) / "
        "RTO measured by every drill; reference: 2 GiB of files and a 500 MB database in 19.8 s",
    ]


def _d_supply(model: Model, _facts: Facts) -> Measure:
    m = Measure("21(2)(d)", "Ασφάλεια της αλυσίδας εφοδιασμού", "Supply chain security")
    links = list(model.links.values())
    uplinks = list(model.municipality.uplinks) if model.municipality else []
    known = sum(1 for link in links if fields(link.register).get("supplier"))
    isps = sum(1 for up in uplinks if up.provider)
    m.evidence = [
        f"ζεύξεις με προμηθευτή / links with a supplier: {known} of {len(links)}",
        f"συνδέσεις διαδικτύου με πάροχο / uplinks with a provider: {isps} of {len(uplinks)}",
    ]
    m.manual = [
        "οι συμβάσεις και οι όροι ασφαλείας των προμηθευτών / suppliers' contracts and "
        "security clauses"
    ]
    if known < len(links) or isps < len(uplinks):
        m.manual.append(
            "συμπληρώστε supplier/provider σε κάθε ζεύξη / fill in every link's supplier"
        )
    m.commands = ["kastro inventory export -i INV --format html"]
    m.status = _status(known + isps > 0, m.manual)
    return m


def _e_maintenance(_model: Model, facts: Facts) -> Measure:
    m = Measure(
        "21(2)(e)",
        "Ασφάλεια στην απόκτηση, ανάπτυξη και συντήρηση, διαχείριση ευπαθειών",
        "Security in acquisition, development and maintenance; vulnerability handling",
    )
    m.evidence = [
        "ενημερώσεις ασφαλείας και επανεκκινήσεις σε αναμονή ειδοποιούνται / pending "
        "security updates and reboots are alerted (KastroSecurityUpdatesPending, "
        "KastroRebootRequired, KastroServicesNeedRestart)",
        f"κανόνες ειδοποίησης / alert rules: {facts.alert_rules}",
    ]
    m.manual = [
        "πολιτική γνωστοποίησης ευπαθειών / vulnerability disclosure policy",
        "IDS με υπογραφές (Suricata, #19) / signature IDS (Suricata, #19)",
    ]
    m.status = "partial"
    return m


def _f_effectiveness(_model: Model, _facts: Facts) -> Measure:
    m = Measure(
        "21(2)(f)",
        "Αξιολόγηση της αποτελεσματικότητας των μέτρων",
        "Assessing the effectiveness of the measures",
    )
    m.evidence = [
        "βαθμολογίες OpenSCAP (ANSSI-BP-028) και Lynis ανά υπολογιστή / OpenSCAP "
        "(ANSSI-BP-028) and Lynis scores per host",
        "κάθε προστασία ελέγχεται από "
        "την πλευρά του επιτιθέμενου στο make test / every protection is tested from "
        "the attacker's side by make test",
    ]
    m.manual = ["ετήσια ανασκόπηση από τη διοίκηση / yearly management review"]
    m.commands = ["kastro lab scores", "make test"]
    m.status = "partial"
    return m


def _g_hygiene(model: Model, _facts: Facts) -> Measure:
    m = Measure(
        "21(2)(g)", "Βασική κυβερνοϋγιεινή και εκπαίδευση", "Basic cyber hygiene and training"
    )
    managed = [h for h in model.hosts]
    m.evidence = [
        f"υπολογιστές με σκλήρυνση (ρόλοι base, endpoint) / hardened hosts (base, "
        f"endpoint roles): {len(managed)}",
        "SSH μόνο με κλειδί, χωρίς root / SSH keys only, no root login",
    ]
    m.manual = ["εκπαίδευση προσωπικού / staff training"]
    m.status = _status(bool(managed), m.manual)
    return m


def _h_crypto(model: Model, _facts: Facts) -> Measure:
    m = Measure("21(2)(h)", "Κρυπτογραφία και κρυπτογράφηση", "Cryptography and encryption")
    untrusted = [link for link in model.links.values() if link.medium in UNTRUSTED_MEDIA]
    encrypted = [link for link in untrusted if link.encrypted]
    m.evidence = [
        f"ζεύξεις σε ξένο μέσο κρυπτογραφημένες (WireGuard) / links over media the "
        f"municipality does not own, encrypted (WireGuard): {len(encrypted)} of {len(untrusted)}",
        "μετρικές και συμβάντα μόνο μέσω TLS / metrics and events over TLS only",
        "τηλεργασία μέσω VPN με κλειδί ανά άτομο / telework over a VPN with a key per person",
    ]
    m.manual = (
        []
        if len(encrypted) == len(untrusted)
        else ["κρυπτογραφήστε τις υπόλοιπες ζεύξεις / encrypt the remaining links"]
    )
    m.status = _status(True, m.manual)
    return m


def _i_access(model: Model, _facts: Facts) -> Measure:
    m = Measure(
        "21(2)(i)",
        "Ασφάλεια ανθρώπινου δυναμικού, έλεγχος πρόσβασης, διαχείριση παγίων",
        "HR security, access control, asset management",
    )
    hosts = model.hosts
    devices = [d for b in model.buildings.values() for d in b.devices.values()]
    registers = [fields(h.register) for h in hosts] + [fields(d.register) for d in devices]
    owned = sum(1 for r in registers if r.get("owner"))
    rated = sum(1 for r in registers if r.get("criticality"))
    workers = model.teleworkers
    revoked = sum(1 for t in workers if t.state == "revoked")
    total = len(hosts) + len(devices)
    m.evidence = [
        f"μητρώο / register: {len(hosts)} υπολογιστές / managed hosts, {len(devices)} "
        f"καταγεγραμμένες συσκευές / documented devices; με υπεύθυνο / with an owner "
        f"{owned} of {total}; με κρισιμότητα / with a criticality {rated} of {total}",
        f"τηλεργαζόμενοι / teleworkers: {len(workers) - revoked} ενεργοί / enabled, {revoked} "
        "ανακληθέντες / revoked",
        f"ζώνες με πολιτική πρόσβασης / zones under the access policy: {len(model.zones)}",
    ]
    m.manual = ["διαδικασίες πρόσληψης και αποχώρησης / joiner and leaver procedures"]
    if owned < total or rated < total:
        m.manual.append("συμπληρώστε owner και criticality / fill in every owner and criticality")
    m.commands = ["kastro inventory export -i INV --format html"]
    m.status = _status(total > 0, m.manual)
    return m


def _j_mfa(_model: Model, _facts: Facts) -> Measure:
    m = Measure(
        "21(2)(j)",
        "Πολυπαραγοντική ταυτοποίηση, ασφαλείς επικοινωνίες",
        "Multi-factor authentication, secured communications",
    )
    m.evidence = [
        "κλειδί VPN ανά συσκευή (κάτι που έχετε) / a VPN key per device (something you have)"
    ]
    m.manual = [
        "δεύτερος παράγοντας για VPN και διαχείριση: το Kastro δεν τον παρέχει ακόμη / "
        "a second factor for VPN and administration: Kastro does not provide one yet",
        "ασφαλείς επικοινωνίες έκτακτης ανάγκης / secured emergency communications",
    ]
    m.status = "partial"
    return m


MEASURES: tuple[Callable[[Model, Facts], Measure], ...] = (
    _a_risk,
    _b_incidents,
    _c_continuity,
    _d_supply,
    _e_maintenance,
    _f_effectiveness,
    _g_hygiene,
    _h_crypto,
    _i_access,
    _j_mfa,
)


def article21(model: Model, facts: Facts) -> list[Measure]:
    return [build(model, facts) for build in MEASURES]


def as_json(measures: list[Measure]) -> str:
    return json.dumps([asdict(m) for m in measures], ensure_ascii=False, indent=2) + "\n"


def as_html(measures: list[Measure], municipality: str) -> str:
    e = html.escape
    words = {
        "evidenced": "τεκμηριώνεται / evidenced",
        "partial": "εν μέρει / partial",
        "manual": "χειροκίνητα / manual",
    }
    parts = []
    for m in measures:
        items = "".join(f"<li>{e(x)}</li>" for x in m.evidence) or "<li>-</li>"
        manual = "".join(f"<li>{e(x)}</li>" for x in m.manual) or "<li>-</li>"
        commands = "".join(f"<code>{e(c)}</code> " for c in m.commands)
        parts.append(
            f"<h2>{e(m.article)} {e(m.title_el)} / {e(m.title_en)}: {e(words[m.status])}</h2>"
            f"<h3>Τεκμήρια Kastro / Kastro's evidence</h3><ul>{items}</ul>"
            f"<h3>Χειροκίνητα / manual</h3><ul>{manual}</ul><p>{commands}</p>"
        )
    return (
        '<!doctype html>\n<html lang="el"><head><meta charset="utf-8">'
        f"<title>NIS2 άρθρο 21 / article 21: {e(municipality)}</title></head><body>\n"
        f"<h1>NIS2 άρθρο 21 παρ. 2 / article 21(2): {e(municipality)}</h1>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def controller_facts(state: Path | None) -> Facts:
    """Counts from the controller: the alert rules shipped, the incident log if there is one."""
    from kastro.monitoring.rules import static_rules
    from kastro.nis2.incidents import replay
    from kastro.nis2.log import IncidentLog, LogError

    rules = sum(1 for g in static_rules()["groups"] for r in g["rules"] if "alert" in r)
    if state is None or not (state / "log.jsonl").exists():
        return Facts(rules)
    try:
        records: list[dict[str, Any]] = IncidentLog(state).records()
    except LogError:
        return Facts(rules, 0, False)
    return Facts(rules, len(replay(records)), True)
