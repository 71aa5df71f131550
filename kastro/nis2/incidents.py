"""Incidents, as the log tells them: every command appends events, and an incident's state is
the replay of its events (nothing else is kept, so nothing else can disagree with the log).

Events: opened, alert (one linked alert), triage (the significance questions and their
answers), sent (a stage submitted by a person, and when), closed, artefact, draft.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kastro.nis2 import deadlines
from kastro.nis2.log import IncidentLog

INCIDENT_ID = re.compile(r"INC-(?P<year>[0-9]{4})-(?P<number>[0-9]{4})")
MALICIOUS = ("suspected", "yes", "no", "unknown")
DISRUPTION = ("none", "limited", "severe")
DAMAGE = ("none", "limited", "considerable")
SEVERITY = ("low", "medium", "high", "critical")
TEXT_MAX = 2000
TITLE_MAX = 200
# Article 23(3): financial loss is "significant" by the entity's own measure; Kastro's default
# is the implementing regulation's (EU) 2024/2690 floor, which a municipality may lower.
DEFAULT_LOSS_THRESHOLD_EUR = 100_000


class IncidentError(ValueError):
    """A command that cannot be carried out; nothing was written."""


@dataclass
class Triage:
    disruption: str = "none"
    damage_to_others: str = "none"
    people_affected: int = 0
    financial_loss_eur: int = 0
    personal_data: bool = False
    loss_threshold_eur: int = DEFAULT_LOSS_THRESHOLD_EUR

    @property
    def significant(self) -> bool:
        """Article 23(3): severe disruption or financial loss, or considerable damage to
        others."""
        return (
            self.disruption == "severe"
            or self.damage_to_others == "considerable"
            or self.financial_loss_eur >= self.loss_threshold_eur
        )

    @property
    def severity(self) -> str:
        if self.disruption == "severe" and self.damage_to_others == "considerable":
            return "critical"
        if self.significant:
            return "high"
        if self.disruption == "limited" or self.damage_to_others == "limited":
            return "medium"
        return "low"


@dataclass
class Incident:
    id: str
    title: str
    aware: dt.datetime
    opened_by: str
    description: str = ""
    malicious: str = "suspected"
    cross_border: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)
    triage: Triage | None = None
    sent: dict[str, dt.datetime] = field(default_factory=dict)
    closed: dt.datetime | None = None
    root_cause: str = ""
    mitigation: str = ""
    artefacts: list[dict[str, str]] = field(default_factory=list)
    drafts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def schedule(self) -> list[deadlines.Due]:
        return deadlines.schedule(self.aware, self.sent.get("notification"), self.closed)

    def outstanding(self) -> list[deadlines.Due]:
        """The reports not yet submitted."""
        return [due for due in self.schedule() if due.stage not in self.sent]


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(deadlines.UTC)


def replay(records: Iterable[Mapping[str, Any]]) -> dict[str, Incident]:
    incidents: dict[str, Incident] = {}
    for record in records:
        data, name = record.get("data") or {}, record.get("incident", "")
        if record.get("event") == "opened":
            incidents[name] = Incident(
                name,
                data["title"],
                _when(data["aware"]),
                record.get("operator", ""),
                data.get("description", ""),
                data.get("malicious", "suspected"),
                bool(data.get("cross_border", False)),
            )
        elif name in incidents:
            _apply(incidents[name], record)
    return incidents


def _apply(incident: Incident, record: Mapping[str, Any]) -> None:
    event, data = record["event"], record.get("data") or {}
    incident.events.append(dict(record))
    if event == "alert":
        incident.alerts.append(data)
    elif event == "triage":
        incident.triage = Triage(**data["answers"])
        incident.malicious = data.get("malicious", incident.malicious)
        incident.cross_border = bool(data.get("cross_border", incident.cross_border))
    elif event == "sent":
        incident.sent[data["stage"]] = _when(data["at"])
    elif event == "closed":
        incident.closed = _when(data["at"])
        incident.root_cause, incident.mitigation = data["root_cause"], data["mitigation"]
    elif event == "artefact":
        incident.artefacts.append(dict(data))
    elif event == "draft":
        incident.drafts.append(dict(data))


class Book:
    """The municipality's incidents: the log, and the commands that add to it."""

    def __init__(self, log: IncidentLog) -> None:
        self.log = log

    def incidents(self) -> dict[str, Incident]:
        return replay(self.log.records())

    def get(self, name: str) -> Incident:
        if not INCIDENT_ID.fullmatch(name):
            raise IncidentError(f"'{name}' is not an incident id: write e.g. INC-2026-0001")
        found = self.incidents()
        if name not in found:
            known = ", ".join(sorted(found)[-5:]) or "none yet"
            raise IncidentError(
                f"{name}: δεν υπάρχει τέτοιο συμβάν / no such incident (latest: {known}; "
                "kastro incident list)"
            )
        return found[name]

    def next_id(self, aware: dt.datetime) -> str:
        year = aware.astimezone(deadlines.ATHENS).year
        numbers = [
            int(match["number"])
            for name in self.incidents()
            if (match := INCIDENT_ID.fullmatch(name)) and int(match["year"]) == year
        ]
        return f"INC-{year}-{max(numbers, default=0) + 1:04d}"


def check_text(value: str, what: str, limit: int = TEXT_MAX, required: bool = False) -> str:
    text = value.strip()
    if required and not text:
        raise IncidentError(f"{what}: γράψτε ένα κείμενο / write a text")
    if len(text) > limit:
        raise IncidentError(f"{what}: {len(text)} characters; keep it under {limit}")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise IncidentError(f"{what}: control characters are not allowed")
    return text


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise IncidentError(f"{what} '{value}': write one of {', '.join(choices)}")
    return value
