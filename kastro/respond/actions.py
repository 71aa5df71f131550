"""`kastro respond`: block sources and isolate hosts on every gateway at once, list,
reconcile, log.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kastro.respond import execute
from kastro.respond.decisions import (
    KINDS,
    Decision,
    DecisionError,
    DecisionStore,
    Network,
    decision_key,
    duration_text,
    protected_by,
)
from kastro.respond.gateways import Gateway, IsolationTarget

# --verify: given the action, probe and read the drop counters (kastro.respond.verify).
Verifier = Callable[[str], dict[str, Any]] | None
SETS = {"block": ("blocklist_v4", "blocklist_v6"), "isolate": ("isolated_v4", "isolated_v6")}
UNDO = {"block": "unblock", "isolate": "release"}


@dataclass
class Report:
    """What happened on each gateway: 'ok', 'already', or the reason it failed."""

    action: str
    target: str
    host: str = ""  # the inventory host an isolation is about
    gateways: dict[str, str] = field(default_factory=dict)  # every host asked, gateways or not
    reconciled: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    verification: dict[str, Any] | None = None  # --verify: the probe and the drop counters

    @property
    def complete(self) -> bool:
        verified = self.verification is None or bool(self.verification.get("verified"))
        return verified and all(status in ("ok", "covered") for status in self.gateways.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            **({"host": self.host} if self.host else {}),
            "gateways": self.gateways,
            "reconciled": self.reconciled,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            **({"verification": self.verification} if self.verification else {}),
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
    verify_with: Verifier = None,
) -> Report:
    """Block `net` on every gateway for `ttl` seconds (a repeated block extends)."""
    refuse_protected(net, gateways)
    return _apply(store, gateways, Decision(str(net), None, reason, operator), ttl, verify_with)


def isolate(
    store: DecisionStore,
    gateways: Sequence[Gateway],
    target: IsolationTarget,
    nets: Sequence[Network],
    ttl: int | None,
    reason: str,
    operator: str,
    verify_with: Verifier = None,
) -> list[Report]:
    """Let the target's addresses talk to the allowlist only, on every gateway and on the
    host itself when Kastro manages it; `ttl` None: until released. Every address is checked
    before any is isolated."""
    hosts = [*gateways, *([target.host] if target.host else [])]
    for net in nets:
        refuse_protected(net, hosts)
    host = target.host.name if target.host else ""
    made = [Decision(str(n), None, reason, operator, kind="isolate", host=host) for n in nets]
    return [_apply(store, hosts, decision, ttl, verify_with) for decision in made]


def unblock(
    store: DecisionStore,
    gateways: Sequence[Gateway],
    net: Network,
    reason: str,
    operator: str,
    verify_with: Verifier = None,
) -> Report:
    return _lift(store, gateways, "block", net, reason, operator, verify_with)


def release(
    store: DecisionStore,
    gateways: Sequence[Gateway],
    target: IsolationTarget,
    nets: Sequence[Network],
    reason: str,
    operator: str,
    verify_with: Verifier = None,
) -> list[Report]:
    hosts = [*gateways, *([target.host] if target.host else [])]
    return [_lift(store, hosts, "isolate", net, reason, operator, verify_with) for net in nets]


def _apply(
    store: DecisionStore,
    hosts: Sequence[Gateway],
    new: Decision,
    ttl: int | None,
    verify_with: Verifier = None,
) -> Report:
    """Store the decision first (a host that misses it now gets it from reconcile), send it
    to every host in parallel, check each answer, retry once, reconcile what else is due."""
    started = time.monotonic()
    now = time.time()
    decisions = store.load(now)
    key = decision_key(new.kind, new.target)
    new.expires = _later(now, ttl, decisions.get(key))
    decisions[key] = new
    store.save(decisions)
    net = ipaddress.ip_network(new.target)
    argv = [new.kind, new.target, *_timeout(new, now)]
    done = _covering(net, new.kind)
    answers = _with_retry(hosts, argv, done)
    report = Report(new.kind, new.target, host=new.host)
    for host in hosts:
        report.gateways[host.name] = _status(answers[host.name], done)
    report.reconciled = _reconcile(hosts, answers, decisions, skip=key)
    if verify_with:
        report.verification = verify_with(report.action)
    report.seconds = time.monotonic() - started
    remaining = new.remaining(now)
    _audit(store, report, new.operator, new.reason, ttl=remaining, until_lifted=remaining is None)
    return report


def _lift(
    store: DecisionStore,
    hosts: Sequence[Gateway],
    kind: str,
    net: Network,
    reason: str,
    operator: str,
    verify_with: Verifier = None,
) -> Report:
    started = time.monotonic()
    decisions = store.load()
    key = decision_key(kind, str(net))
    lifted = decisions.pop(key, None)
    store.save(decisions)
    report = Report(UNDO[kind], str(net), host=lifted.host if lifted else "")
    covered = _covering(net, kind)
    answers = _with_retry(hosts, [UNDO[kind], str(net)], lambda r: not covered(r))
    for host in hosts:
        report.gateways[host.name] = _status(answers[host.name], lambda r: not covered(r))
    report.reconciled = _reconcile(hosts, answers, decisions, skip=key)
    if verify_with:
        report.verification = verify_with(report.action)
    report.seconds = time.monotonic() - started
    _audit(store, report, operator, reason)
    return report


def _later(now: float, ttl: int | None, previous: Decision | None) -> float | None:
    """A decision never shortens the one in force: the later expiry wins; None is 'until
    lifted'."""
    if ttl is None or (previous is not None and previous.expires is None):
        return None
    return max(now + ttl, previous.expires if previous and previous.expires else 0.0)


def _timeout(decision: Decision, now: float) -> list[str]:
    remaining = decision.remaining(now)
    return [] if remaining is None else ["--timeout", duration_text(max(remaining, 1))]


def reconcile(store: DecisionStore, hosts: Sequence[Gateway], operator: str) -> Report:
    """Every decision in force onto every host that lacks it: blocks on the gateways,
    isolations on the gateways and on the isolated host."""
    started = time.monotonic()
    answers = execute.run(hosts, ["blocked"])
    report = Report("reconcile", "*")
    for host in hosts:
        result = answers[host.name]
        report.gateways[host.name] = "ok" if result.ok else result.error
    report.reconciled = _reconcile(hosts, answers, store.load(), skip="")
    report.seconds = time.monotonic() - started
    if any(report.reconciled.values()) or not report.complete:
        _audit(store, report, operator, "reconcile")
    return report


def listing(store: DecisionStore, hosts: Sequence[Gateway]) -> list[dict[str, Any]]:
    """Every block and isolation: on which hosts, for how long, who decided and why, and
    where it is missing."""
    answers = execute.run(hosts, ["blocked"])
    decisions = store.load()
    rows: dict[str, dict[str, Any]] = {}
    for name, result in sorted(answers.items()):
        for kind in KINDS:
            for elem in _elements(result.data, kind) if result.ok else []:
                key = decision_key(kind, str(ipaddress.ip_network(elem["val"], strict=False)))
                row = rows.setdefault(
                    key, {"kind": kind, "target": elem["val"], "gateways": [], "expires_in": None}
                )
                row["gateways"].append(name)
                if elem.get("expires") is not None:
                    row["expires_in"] = max(int(elem["expires"]), row["expires_in"] or 0)
    now = time.time()
    for key, decided in decisions.items():  # decided, but on no host reached
        rows.setdefault(
            key,
            {
                "kind": decided.kind,
                "target": decided.target,
                "gateways": [],
                "expires_in": decided.remaining(now),
            },
        )
    unreachable = {n: r.error for n, r in answers.items() if not r.ok}
    for key, row in rows.items():
        found = decisions.get(key)
        row["host"] = found.host if found else ""
        row["operator"] = found.operator if found else ""
        row["reason"] = found.reason if found else "(not decided with kastro respond)"
        due = [h.name for h in hosts if _applies(row["kind"], row["host"], h)]
        row["missing_on"] = sorted(set(due) - set(row["gateways"]))
        row["unreachable"] = unreachable
    return sorted(rows.values(), key=lambda r: (r["kind"], str(r["target"])))


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
        if "isolated_v" in result.error and "No such file" in result.error:
            return (
                "this host's firewall predates isolation: apply the firewall role once "
                "(playbooks/site.yml), then 'kastro respond reconcile'"
            )
        return result.error
    if result.data.get("covered_by"):
        return "covered"
    if result.data.get("inside"):
        return f"still blocked as part of {', '.join(result.data['inside'])}: unblock that"
    return "ok" if done(result) else "not in the host's set after the change"


def _elements(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The entries of the kind's two sets in a host's answer: every answer carries all the
    SOC's sets ('sets'); `blocked` lists them at the top level."""
    sets = data.get("sets", data)
    return [e for name in SETS[kind] for e in sets.get(name, [])]


def _covering(net: Network, kind: str) -> Any:
    """A test of a host's answer: whether the kind's sets cover `net`."""

    def covers(result: execute.Result) -> bool:
        for elem in _elements(result.data, kind):
            other = ipaddress.ip_network(str(elem["val"]), strict=False)
            if other.version == net.version and net.subnet_of(other):  # type: ignore[arg-type]
                return True
        return False

    return covers


def _applies(kind: str, isolated_host: str, host: Gateway) -> bool:
    """Blocks go to the gateways; isolations to the gateways and the isolated host."""
    return host.role == "gateway" or (kind == "isolate" and host.name == isolated_host)


def _reconcile(
    hosts: Sequence[Gateway],
    answers: dict[str, execute.Result],
    decisions: dict[str, Decision],
    skip: str,
) -> dict[str, list[str]]:
    """Decisions in force that a reached host lacks, applied there now."""
    now = time.time()
    fixed: dict[str, list[str]] = {}
    for host in hosts:
        result = answers[host.name]
        if not result.ok:
            continue
        for key, decision in sorted(decisions.items()):
            net = ipaddress.ip_network(decision.target)
            if (
                key == skip
                or not _applies(decision.kind, decision.host, host)
                or _covering(net, decision.kind)(result)
                or not decision.in_force(now + 1)
            ):
                continue
            argv = [decision.kind, decision.target, *_timeout(decision, now)]
            done = execute.run([host], argv)[host.name]
            fixed.setdefault(host.name, []).append(key if done.ok else f"{key}: {done.error}")
    return fixed


def _audit(
    store: DecisionStore,
    report: Report,
    operator: str,
    reason: str,
    ttl: int | None = None,
    until_lifted: bool = False,
) -> None:
    store.audit(
        {
            **report.as_dict(),
            "operator": operator,
            "reason": reason,
            **({"ttl_seconds": ttl} if ttl is not None else {}),
            **({"until_lifted": True} if until_lifted else {}),
        }
    )
