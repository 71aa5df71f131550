"""`kastro respond`: block and unblock sources on every gateway at once, list, reconcile, log.

A block is checked (address, duration, reason, the allowlist of every gateway and this
controller's own address) before anything changes; then it is stored as a decision in
force, sent to every gateway in parallel, and each gateway's answer (its blocklist after
the change) is checked for the block. A gateway that missed it is named, tried once more,
and left to `reconcile`, which every later action also does for the gateways it reaches:
no silent partial state.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kastro.respond import execute
from kastro.respond.decisions import (
    Decision,
    DecisionError,
    DecisionStore,
    Network,
    duration_text,
    protected_by,
)
from kastro.respond.gateways import Gateway


@dataclass
class Report:
    """What happened on each gateway: 'ok', 'already', or the reason it failed."""

    action: str
    target: str
    gateways: dict[str, str] = field(default_factory=dict)
    reconciled: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return all(status in ("ok", "covered") for status in self.gateways.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "gateways": self.gateways,
            "reconciled": self.reconciled,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
        }


def refuse_protected(net: Network, gateways: Sequence[Gateway]) -> None:
    """The allowlist, checked here before any gateway is asked (each checks it again), and
    the address this controller reaches each gateway from."""
    for gateway in gateways:
        entry = protected_by(net, gateway.allowlist)
        if entry:
            _refuse(net, entry, f"the allowlist of {gateway.name}")
    for gateway in gateways:
        own = gateway.controller_address()
        if own and protected_by(net, [own]):
            _refuse(net, own, f"this controller's address towards {gateway.name}")


def _refuse(net: Network, entry: str, what: str) -> None:
    raise DecisionError(
        f"{net} overlaps {entry} ({what}: management networks, the SOC, firewall_allowlist, "
        "the controller): it is never blocked / δεν αποκλείεται ποτέ"
    )


def block(
    store: DecisionStore,
    gateways: Sequence[Gateway],
    net: Network,
    ttl: int,
    reason: str,
    operator: str,
) -> Report:
    started = time.monotonic()
    refuse_protected(net, gateways)
    now = time.time()
    decisions = store.load(now)
    key = str(net)
    previous = decisions.get(key)
    expires = max(now + ttl, previous.expires if previous else 0.0)  # never shortens
    decisions[key] = Decision(key, expires, reason, operator)
    store.save(decisions)  # first: a gateway that misses it now gets it from reconcile
    report = Report("block", key)
    argv = ["block", key, "--timeout", duration_text(int(expires - now))]
    answers = _with_retry(gateways, argv, lambda r: _blocks(r, net))
    for gateway in gateways:
        report.gateways[gateway.name] = _status(answers[gateway.name], lambda r: _blocks(r, net))
    report.reconciled = _reconcile(gateways, answers, decisions, skip=key)
    report.seconds = time.monotonic() - started
    _audit(store, report, operator, reason, ttl=int(expires - now))
    return report


def unblock(
    store: DecisionStore, gateways: Sequence[Gateway], net: Network, reason: str, operator: str
) -> Report:
    started = time.monotonic()
    decisions = store.load()
    decisions.pop(str(net), None)
    store.save(decisions)
    report = Report("unblock", str(net))
    answers = _with_retry(gateways, ["unblock", str(net)], lambda r: not _blocks(r, net))
    for gateway in gateways:
        report.gateways[gateway.name] = _status(
            answers[gateway.name], lambda r: not _blocks(r, net)
        )
    report.reconciled = _reconcile(gateways, answers, decisions, skip=str(net))
    report.seconds = time.monotonic() - started
    _audit(store, report, operator, reason)
    return report


def reconcile(store: DecisionStore, gateways: Sequence[Gateway], operator: str) -> Report:
    """Every decision in force onto every gateway that lacks it."""
    started = time.monotonic()
    answers = execute.run(gateways, ["blocked"])
    report = Report("reconcile", "*")
    for gateway in gateways:
        result = answers[gateway.name]
        report.gateways[gateway.name] = "ok" if result.ok else result.error
    report.reconciled = _reconcile(gateways, answers, store.load(), skip="")
    report.seconds = time.monotonic() - started
    if any(report.reconciled.values()) or not report.complete:
        _audit(store, report, operator, "reconcile")
    return report


def listing(store: DecisionStore, gateways: Sequence[Gateway]) -> list[dict[str, Any]]:
    """Every blocked network: on which gateways, for how long, who decided and why."""
    answers = execute.run(gateways, ["blocked"])
    decisions = store.load()
    rows: dict[str, dict[str, Any]] = {}
    for name, result in sorted(answers.items()):
        for elem in _elements(result.data) if result.ok else []:
            row = rows.setdefault(
                elem["val"], {"target": elem["val"], "gateways": [], "expires_in": None}
            )
            row["gateways"].append(name)
            if elem.get("expires") is not None:
                row["expires_in"] = max(int(elem["expires"]), row["expires_in"] or 0)
    for row in rows.values():
        decision = decisions.get(str(ipaddress.ip_network(row["target"], strict=False)))
        row["operator"] = decision.operator if decision else ""
        row["reason"] = decision.reason if decision else "(not decided with kastro respond)"
        row["missing_on"] = sorted(set(answers) - set(row["gateways"]))
    unreachable = {n: r.error for n, r in answers.items() if not r.ok}
    for key, decision in decisions.items():  # decided, but on no gateway reached
        if key not in {str(ipaddress.ip_network(t, strict=False)) for t in rows}:
            rows[key] = {
                "target": key,
                "gateways": [],
                "expires_in": decision.remaining(time.time()),
                "operator": decision.operator,
                "reason": decision.reason,
                "missing_on": sorted(answers),
            }
    out = sorted(rows.values(), key=lambda r: str(r["target"]))
    for row in out:
        row["unreachable"] = unreachable
    return out


def _with_retry(
    gateways: Sequence[Gateway], argv: list[str], done: Any
) -> dict[str, execute.Result]:
    answers = execute.run(gateways, argv)
    again = [g for g in gateways if not (answers[g.name].ok and done(answers[g.name]))]
    if again:
        answers.update(execute.run(again, argv))
    return answers


def _status(result: execute.Result, done: Any) -> str:
    if not result.ok:
        return result.error
    if result.data.get("covered_by"):
        return "covered"
    if result.data.get("inside"):
        return f"still blocked as part of {', '.join(result.data['inside'])}: unblock that"
    return "ok" if done(result) else "not in the gateway's blocklist after the change"


def _elements(data: dict[str, Any]) -> list[dict[str, Any]]:
    if "elements" in data:
        return list(data["elements"])
    return [e for name in ("blocklist_v4", "blocklist_v6") for e in data.get(name, [])]


def _blocks(result: execute.Result, net: Network) -> bool:
    """Whether the gateway's blocklist, as it answered, covers `net`."""
    for elem in _elements(result.data):
        other = ipaddress.ip_network(str(elem["val"]), strict=False)
        if other.version == net.version and net.subnet_of(other):  # type: ignore[arg-type]
            return True
    return False


def _reconcile(
    gateways: Sequence[Gateway],
    answers: dict[str, execute.Result],
    decisions: dict[str, Decision],
    skip: str,
) -> dict[str, list[str]]:
    """Decisions in force that a reached gateway lacks, applied there now."""
    now = time.time()
    fixed: dict[str, list[str]] = {}
    for gateway in gateways:
        result = answers[gateway.name]
        if not result.ok:
            continue
        for key, decision in sorted(decisions.items()):
            net = ipaddress.ip_network(key)
            if key == skip or _blocks(result, net) or decision.remaining(now) < 1:
                continue
            argv = ["block", key, "--timeout", duration_text(decision.remaining(now))]
            done = execute.run([gateway], argv)[gateway.name]
            fixed.setdefault(gateway.name, []).append(key if done.ok else f"{key}: {done.error}")
    return fixed


def _audit(
    store: DecisionStore, report: Report, operator: str, reason: str, ttl: int | None = None
) -> None:
    store.audit(
        {
            **report.as_dict(),
            "operator": operator,
            "reason": reason,
            **({"ttl_seconds": ttl} if ttl is not None else {}),
        }
    )
