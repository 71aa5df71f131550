"""The reports a person reviews, signs and sends: one JSON document per stage and language,
checked against report.schema.json before it is written, and the same content as an HTML page
to print and sign. Kastro never sends them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from kastro.nis2 import deadlines
from kastro.nis2.alerts import Facts, Plan, facts
from kastro.nis2.incidents import Incident

LANGUAGES = ("el", "en")
FORMAT_VERSION = 1
# What each stage carries beyond the early warning's facts (article 23(4)).
WITH_ASSESSMENT = ("notification", "progress", "final")
WITH_OUTCOME = ("progress", "final")

WORDS: dict[str, dict[str, str]] = {
    "el": {
        "draft": "ΠΡΟΣΧΕΔΙΟ: να ελεγχθεί και να υπογραφεί πριν σταλεί· το Kastro δεν το στέλνει",
        "suspected": "υπάρχει υποψία",
        "yes": "ναι",
        "no": "όχι",
        "unknown": "άγνωστο",
        "none": "καμία",
        "limited": "περιορισμένη",
        "severe": "σοβαρή",
        "considerable": "σημαντική",
        "low": "χαμηλή",
        "medium": "μέτρια",
        "high": "υψηλή",
        "critical": "κρίσιμη",
        "became aware": "από τη στιγμή που έγινε γνωστό",
        "notification submitted": "από την υποβολή της κοινοποίησης",
        "notification deadline": "από την προθεσμία της κοινοποίησης",
        "incident handled": "από τη λήξη του συμβάντος",
    },
    "en": {
        "draft": "DRAFT: review and sign before sending; Kastro does not send it",
        **{
            w: w
            for w in (
                "suspected",
                "yes",
                "no",
                "unknown",
                "none",
                "limited",
                "severe",
                "considerable",
                "low",
                "medium",
                "high",
                "critical",
            )
        },
        **{
            b: b
            for b in (
                "became aware",
                "notification submitted",
                "notification deadline",
                "incident handled",
            )
        },
    },
}
EVENTS: dict[str, dict[str, str]] = {
    "el": {
        "aware": "έγινε γνωστό το συμβάν",
        "early_warning": "υποβλήθηκε η έγκαιρη προειδοποίηση",
        "notification": "υποβλήθηκε η κοινοποίηση",
        "progress": "υποβλήθηκε η έκθεση προόδου",
        "final": "υποβλήθηκε η τελική έκθεση",
        "handled": "το συμβάν αντιμετωπίστηκε",
    },
    "en": {
        "aware": "the incident became known",
        "early_warning": "early warning submitted",
        "notification": "notification submitted",
        "progress": "progress report submitted",
        "final": "final report submitted",
        "handled": "the incident was handled",
    },
}
HEADINGS: dict[str, dict[str, str]] = {
    "el": {
        "entity": "Οντότητα",
        "recipient": "Παραλήπτης (CSIRT)",
        "incident": "Συμβάν",
        "aware": "Έγινε γνωστό",
        "deadline": "Προθεσμία υποβολής",
        "malicious": "Υποψία κακόβουλης ή παράνομης ενέργειας",
        "cross_border": "Διασυνοριακή επίπτωση",
        "affected": "Επηρεαζόμενα",
        "alerts": "Ειδοποιήσεις",
        "iocs": "Δείκτες παραβίασης (IOC)",
        "assessment": "Αρχική εκτίμηση σοβαρότητας και επιπτώσεων",
        "root_cause": "Είδος απειλής / βασική αιτία",
        "mitigation": "Μέτρα μετριασμού",
        "signature": "Υπογραφή (υπεύθυνος ασφάλειας ΤΠΕ)",
        "description": "Περιγραφή",
    },
    "en": {
        "entity": "Entity",
        "recipient": "Recipient (CSIRT)",
        "incident": "Incident",
        "aware": "Became aware",
        "deadline": "Due",
        "malicious": "Suspected unlawful or malicious act",
        "cross_border": "Cross-border impact",
        "affected": "Affected",
        "alerts": "Alerts",
        "iocs": "Indicators of compromise",
        "assessment": "Initial assessment of severity and impact",
        "root_cause": "Type of threat / root cause",
        "mitigation": "Mitigation",
        "signature": "Signature (ICT security officer)",
        "description": "Description",
    },
}


@dataclass(frozen=True)
class Context:
    """What a report says about the entity and where it goes (the inventory's kastro_nis2)."""

    municipality: str
    domain: str
    entity: Mapping[str, str]
    csirt: Mapping[str, str]
    officer: Mapping[str, str]
    plan: Plan
    descriptions: Mapping[str, str]  # building and host names -> their description
    services: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # by host
    service_descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)


def report(
    incident: Incident, stage: str, language: str, context: Context, now: dt.datetime
) -> dict[str, Any]:
    """The draft of one stage in one language (keys are the schema's; texts are in the
    language)."""
    words = WORDS[language]
    due = next(d for d in incident.schedule() if d.stage == stage)
    found = facts(incident.alerts, context.plan)
    body: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "language": language,
        "stage": stage,
        "stage_title": deadlines.STAGE_NAMES[stage][LANGUAGES.index(language)],
        "status": words["draft"],
        "incident": incident.id,
        "title": incident.title,
        "description": incident.description,
        "drafted_at": deadlines.iso(now),
        "entity": {"name": context.municipality, "domain": context.domain, **context.entity},
        "security_officer": dict(context.officer),
        "recipient": dict(context.csirt),
        "became_aware": _instant(incident.aware),
        "deadline": {**_instant(due.at), "counted": words[due.basis]},
        "suspected_malicious": words[incident.malicious],
        "cross_border_impact": words["yes" if incident.cross_border else "no"],
        "affected": _affected(found, context),
        "alerts": [_alert(a, language) for a in incident.alerts],
        "timeline": _timeline(incident, EVENTS[language]),
    }
    body["iocs"] = found.iocs()  # what is known so far, in every stage
    if stage in WITH_ASSESSMENT:
        body["assessment"] = _assessment(incident, words)
    if stage in WITH_OUTCOME:
        body["root_cause"] = incident.root_cause
        body["mitigation"] = incident.mitigation
        body["ongoing"] = incident.closed is None
    return body


def _instant(when: dt.datetime) -> dict[str, str]:
    return {"utc": deadlines.iso(when), "athens": deadlines.athens(when)}


def _affected(found: Facts, context: Context) -> dict[str, list[dict[str, str]]]:
    hosts = []
    for name in sorted(found.hosts):
        entry = context.plan.hosts[name]
        hosts.append(
            {
                "name": name,
                "role": str(entry.get("role", "")),
                "building": str(entry.get("building", "")),
                "zone": str(entry.get("zone", "")),
                "description": context.descriptions.get(name, ""),
            }
        )
    return {
        "buildings": [
            {"name": b, "description": context.descriptions.get(b, "")}
            for b in sorted(found.buildings)
        ],
        "zones": [{"name": z} for z in sorted(found.zones)],
        "hosts": hosts,
        "services": [
            {"name": s, "host": h, "description": context.service_descriptions.get(s, "")}
            for h in sorted(found.hosts)
            for s in context.services.get(h, ())
        ],
    }


def _alert(alert: Mapping[str, Any], language: str) -> dict[str, str]:
    labels = alert.get("labels") or {}
    return {
        "fingerprint": str(alert.get("fingerprint", "")),
        "started": str(alert.get("startsAt", "")),
        "name": str(labels.get("alertname", "")),
        "summary": str(alert.get(f"summary_{language}", "")),
    }


def _timeline(incident: Incident, events: Mapping[str, str]) -> list[dict[str, str]]:
    entries = [(incident.aware, "aware")]
    entries += [(when, stage) for stage, when in incident.sent.items()]
    if incident.closed:
        entries.append((incident.closed, "handled"))
    return [{"time": deadlines.iso(when), "event": events[what]} for when, what in sorted(entries)]


def _assessment(incident: Incident, words: Mapping[str, str]) -> dict[str, Any]:
    triage = incident.triage
    if triage is None:
        return {"completed": False}
    return {
        "completed": True,
        "significant": triage.significant,
        "severity": words[triage.severity],
        "disruption": words[triage.disruption],
        "damage_to_others": words[triage.damage_to_others],
        "people_affected": triage.people_affected,
        "financial_loss_eur": triage.financial_loss_eur,
        "personal_data": triage.personal_data,
    }


def schema() -> dict[str, Any]:
    text = resources.files("kastro.nis2").joinpath("report.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def check(body: Mapping[str, Any]) -> None:
    """Raises jsonschema's ValidationError when a draft breaks the schema (a Kastro bug)."""
    import jsonschema

    jsonschema.validate(body, schema())


def as_json(body: Mapping[str, Any]) -> bytes:
    return (json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def as_html(body: Mapping[str, Any]) -> bytes:
    """A page to print and sign: every field of the JSON, headed in the report's language."""
    heads = HEADINGS[body["language"]]
    e = html.escape
    rows = [
        (heads["entity"], f"{body['entity']['name']} ({body['entity']['domain']})"),
        (heads["recipient"], ", ".join(str(v) for v in body["recipient"].values())),
        (heads["incident"], f"{body['incident']}: {body['title']}"),
        (heads["description"], body["description"]),
        (heads["aware"], body["became_aware"]["athens"]),
        (heads["deadline"], f"{body['deadline']['athens']} ({body['deadline']['counted']})"),
        (heads["malicious"], body["suspected_malicious"]),
        (heads["cross_border"], body["cross_border_impact"]),
    ]
    sections = [_table(rows), _list(heads["affected"], _affected_lines(body["affected"]))]
    sections.append(
        _list(
            heads["alerts"],
            [
                f"{a['started']} {a['name']} [{a['fingerprint']}] {a['summary']}"
                for a in body["alerts"]
            ],
        )
    )
    sections.append(
        _list(
            heads["iocs"],
            [f"{kind}: {', '.join(values)}" for kind, values in body["iocs"].items() if values],
        )
    )
    if "assessment" in body:
        sections.append(
            _table([(k, str(v)) for k, v in body["assessment"].items()], heads["assessment"])
        )
    if "root_cause" in body:
        sections.append(
            _table(
                [
                    (heads["root_cause"], body["root_cause"]),
                    (heads["mitigation"], body["mitigation"]),
                ]
            )
        )
    officer = body["security_officer"]
    page = (
        f'<!doctype html>\n<html lang="{body["language"]}"><head><meta charset="utf-8">'
        f"<title>{e(body['incident'])} {e(body['stage_title'])}</title>"
        "<style>body{font-family:sans-serif;max-width:50em}th{text-align:left;"
        "vertical-align:top;padding-right:1em}.draft{color:#a00;font-weight:bold}</style>"
        f"</head><body>\n<h1>{e(body['stage_title'])}: {e(body['incident'])}</h1>\n"
        f'<p class="draft">{e(body["status"])}</p>\n'
        + "\n".join(sections)
        + f"\n<h2>{e(heads['signature'])}</h2>\n<p>{e(officer.get('name', ''))}, "
        f"{e(officer.get('role', ''))}</p>\n<p>......................................</p>\n"
        "</body></html>\n"
    )
    return page.encode()


def _affected_lines(affected: Mapping[str, list[Mapping[str, str]]]) -> list[str]:
    lines = [f"{b['name']}: {b['description']}" for b in affected["buildings"]]
    lines += [z["name"] for z in affected["zones"]]
    lines += [f"{s['name']} @ {s['host']}: {s['description']}" for s in affected["services"]]
    lines += [
        f"{h['name']} ({h['role']}, {h['zone'] or h['building']}) {h['description']}"
        for h in affected["hosts"]
    ]
    return lines


def _table(rows: list[tuple[str, str]], title: str = "") -> str:
    e = html.escape
    head = f"<h2>{e(title)}</h2>\n" if title else ""
    cells = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    return f"{head}<table>{cells}</table>"


def _list(title: str, items: list[str]) -> str:
    e = html.escape
    entries = "".join(f"<li>{e(item)}</li>" for item in items) or "<li>-</li>"
    return f"<h2>{e(title)}</h2>\n<ul>{entries}</ul>"
