"""Automatic response, opt-in: a rule file maps alerts (EVE records from the Kastro monitors,
later Suricata) to decisions, under rate caps and the same allowlist as a person's.

    enabled: true              # off unless said; a missing or false value runs nothing
    limits: {per_minute: 5, per_hour: 30}
    rules:
      - name: synflood-source
        detectors: [synflood]  # the monitor's kastro.detector, and/or
        signature_ids: []      # alert.signature_id (Kastro's or Suricata's)
        min_severity: 2        # 1 high, 2 medium, 3 low: this or more severe
        action: block          # or isolate (a host of ours that misbehaves)
        address: src_ip        # or dest_ip
        ttl: 10m

Every automatic decision goes through `actions.block`/`actions.isolate` with operator
`auto:RULE`, so it is audited, listed and reconciled like any other; a refusal (allowlist,
rate cap, an address that is not one) is audited as `auto-refused` once per address and
reason in a run, so an alert flood cannot flood the audit log either.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kastro.respond import actions
from kastro.respond.decisions import (
    DecisionError,
    DecisionStore,
    decision_key,
    parse_target,
    parse_ttl,
)
from kastro.respond.gateways import Gateway, IsolationTarget

RULE_KEYS = {"name", "detectors", "signature_ids", "min_severity", "action", "address", "ttl"}
TOP_KEYS = {"enabled", "limits", "rules"}
DEFAULT_LIMITS = {"per_minute": 5, "per_hour": 30}


@dataclass(frozen=True)
class Rule:
    name: str
    detectors: frozenset[str]
    signature_ids: frozenset[int]
    min_severity: int
    action: str
    address: str
    ttl: int

    def matches(self, record: Mapping[str, Any]) -> bool:
        info = record.get("alert") if isinstance(record.get("alert"), dict) else {}
        extra = record.get("kastro") if isinstance(record.get("kastro"), dict) else {}
        severity = info.get("severity") if isinstance(info, dict) else None
        if not isinstance(severity, int) or severity > self.min_severity:
            return False
        detector = str((extra or {}).get("detector", ""))
        signature = (info or {}).get("signature_id")
        return detector in self.detectors or signature in self.signature_ids


@dataclass
class Rules:
    enabled: bool
    rules: list[Rule]
    per_minute: int
    per_hour: int

    def first_match(self, record: Mapping[str, Any]) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(record)), None)


class RuleError(ValueError):
    """The rule file is wrong; the message names the field and the fix."""


def load_rules(path: Path) -> Rules:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{path}: cannot be read as YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RuleError(f"{path}: write a mapping with enabled, limits and rules")
    _no_unknown(data, TOP_KEYS, str(path))
    limits = {**DEFAULT_LIMITS, **(data.get("limits") or {})}
    _no_unknown(limits, set(DEFAULT_LIMITS), f"{path}: limits")
    for key, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
            raise RuleError(f"{path}: limits.{key} must be a number from 1 to 1000")
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise RuleError(f"{path}: rules must be a list")
    parsed = [_rule(entry, f"{path}: rules[{i}]") for i, entry in enumerate(rules)]
    names = [rule.name for rule in parsed]
    if len(set(names)) != len(names):
        raise RuleError(f"{path}: two rules share a name; each name must be unique")
    return Rules(data.get("enabled") is True, parsed, limits["per_minute"], limits["per_hour"])


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise RuleError(f"{where}: write a mapping (name, detectors, action, ttl, ...)")
    _no_unknown(entry, RULE_KEYS, where)
    name = str(entry.get("name") or "")
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 40:
        raise RuleError(f"{where}.name: letters, digits, '-' and '_' (at most 40)")
    detectors = entry.get("detectors") or []
    signatures = entry.get("signature_ids") or []
    if not isinstance(detectors, list) or not all(isinstance(d, str) for d in detectors):
        raise RuleError(f"{where}.detectors: a list of detector names, e.g. [synflood]")
    if not isinstance(signatures, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in signatures
    ):
        raise RuleError(f"{where}.signature_ids: a list of numbers")
    if not detectors and not signatures:
        raise RuleError(f"{where}: name detectors or signature_ids, or the rule matches nothing")
    severity = entry.get("min_severity", 2)
    if severity not in (1, 2, 3):
        raise RuleError(f"{where}.min_severity: 1 (high), 2 (medium) or 3 (low)")
    action = entry.get("action", "block")
    if action not in ("block", "isolate"):
        raise RuleError(f"{where}.action: block or isolate")
    address = entry.get("address", "src_ip")
    if address not in ("src_ip", "dest_ip"):
        raise RuleError(f"{where}.address: src_ip or dest_ip")
    try:
        ttl = parse_ttl(str(entry.get("ttl", "")))
    except DecisionError as exc:
        raise RuleError(f"{where}.ttl: {exc}") from exc
    return Rule(name, frozenset(detectors), frozenset(signatures), severity, action, address, ttl)


@dataclass
class Responder:
    """Applies the rules to alert records; remembers what it refused in this run."""

    store: DecisionStore
    gateways: Sequence[Gateway]
    rules: Rules
    find_host: Any  # address -> IsolationTarget (the inventory's host, or the bare address)
    refused: set[tuple[str, str]] = field(default_factory=set)
    # When the automatic decisions of the last hour were made: read from the audit log once
    # per round (new_round), then kept up to date here, not re-read for every alert.
    _recent: list[float] | None = field(default=None, repr=False)

    def new_round(self) -> None:
        self._recent = None

    def _automatic_times(self) -> list[float]:
        if self._recent is None:
            self._recent = [
                float(r["time"])
                for r in self.store.audit_records()
                if str(r.get("operator", "")).startswith("auto:")
                and r.get("action") in ("block", "isolate")
            ]
        return self._recent

    def handle(self, record: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """What one alert record led to: nothing, a decision, or a refusal (audited)."""
        now = time.time() if now is None else now
        rule = self.rules.first_match(record)
        if rule is None:
            return {"outcome": "no rule"}
        text = str(record.get(rule.address) or "")
        try:
            net = parse_target(text)
            if net.num_addresses != 1:
                raise DecisionError(f"{text} is not one address")
            if self._in_force(rule, str(net), now):
                return {"outcome": "already", "target": str(net), "rule": rule.name}
            self._check_rate(now)
            reports = self._decide(rule, net, record)
            self._automatic_times().append(now)
        except DecisionError as exc:
            return self._refuse(rule, text, str(exc))
        return {
            "outcome": "decided",
            "rule": rule.name,
            "target": str(net),
            "complete": all(r.complete for r in reports),
        }

    def _in_force(self, rule: Rule, target: str, now: float) -> bool:
        """A decision for this address that lasts at least half the rule's time: nothing to
        do (a block that runs out sooner is extended)."""
        decision = self.store.load(now).get(decision_key(rule.action, target))
        if decision is None:
            return False
        remaining = decision.remaining(now)
        return remaining is None or remaining >= rule.ttl // 2

    def _check_rate(self, now: float) -> None:
        recent = self._automatic_times()
        if sum(t > now - 60 for t in recent) >= self.rules.per_minute:
            raise DecisionError(f"rate cap: {self.rules.per_minute} automatic decisions a minute")
        if sum(t > now - 3600 for t in recent) >= self.rules.per_hour:
            raise DecisionError(f"rate cap: {self.rules.per_hour} automatic decisions an hour")

    def _decide(
        self, rule: Rule, net: ipaddress.IPv4Network | ipaddress.IPv6Network, record: Any
    ) -> list[actions.Report]:
        info = record.get("alert") if isinstance(record.get("alert"), dict) else {}
        signature = " ".join(str((info or {}).get("signature", "")).split())[:120]
        reason = f"auto: rule {rule.name}: {signature or 'alert'} at {record.get('timestamp', '')}"
        who = f"auto:{rule.name}"
        if rule.action == "block":
            return [actions.block(self.store, self.gateways, net, rule.ttl, reason, who)]
        target: IsolationTarget = self.find_host(str(net.network_address))
        return actions.isolate(self.store, self.gateways, target, [net], rule.ttl, reason, who)

    def _refuse(self, rule: Rule, text: str, why: str) -> dict[str, Any]:
        key = (text, why.split(":")[0])
        if key not in self.refused:
            self.refused.add(key)
            self.store.audit(
                {
                    "action": "auto-refused",
                    "target": text[:64],
                    "operator": f"auto:{rule.name}",
                    "reason": why,
                    "gateways": {},
                    "complete": True,
                }
            )
        return {"outcome": "refused", "rule": rule.name, "target": text[:64], "why": why}


def position_file(store: DecisionStore, eve: Path) -> Path:
    digest = hashlib.sha256(str(eve.resolve()).encode()).hexdigest()[:16]
    return store.directory / "auto" / f"{digest}.json"


def read_alerts(store: DecisionStore, eve: Path) -> tuple[list[dict[str, Any]], Any]:
    """The alert records added to `eve` since the last run, and where reading stopped (save
    it with `done` once they are handled). The first run starts at the end: alerts from
    before automatic response was switched on are history, not orders."""
    from monitors.forward import Position, read_new

    path = position_file(store, eve)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            st = eve.stat()
            return [], Position(st.st_ino, st.st_size)
        except FileNotFoundError:
            return [], Position()  # the file does not exist yet: all of it will be new
    batch = read_new(eve, Position.load(path))
    return [r for r in batch.records if isinstance(r, dict)], batch.end


def done(store: DecisionStore, eve: Path, end: Any) -> None:
    end.save(position_file(store, eve))


def run_once(responder: Responder, eves: Sequence[Path]) -> list[dict[str, Any]]:
    """Every new alert of every EVE file through the rules; positions saved after."""
    outcomes = []
    responder.new_round()
    for eve in eves:
        records, end = read_alerts(responder.store, eve)
        outcomes += [responder.handle(record) for record in records]
        done(responder.store, eve, end)
    return outcomes
