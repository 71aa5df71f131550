"""The `kastro respond` commands: arguments, checks before any change, output.

Exit status: 0 done on every host; 1 refused (bad argument, allowlist, inventory):
nothing changed; 3 done on some hosts only (the decision is kept: `kastro respond
reconcile` finishes it, and so does the next `kastro respond`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kastro.controller.model_vars import model_variables
from kastro.controller.secrets import SecretsDirError, municipality_id
from kastro.i18n import _, t, tr
from kastro.respond import actions, auto, gateways, metrics, verify
from kastro.respond.decisions import (
    DecisionError,
    DecisionStore,
    Network,
    check_reason,
    operator,
    parse_target,
    parse_ttl,
)

PARTIAL = 3


def add_parser(commands: Any) -> None:
    respond = commands.add_parser(
        "respond",
        help=_("SOC response on every gateway at once: block, isolate, list, reconcile, log"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions_parser = respond.add_subparsers(dest="action", metavar="ACTION", required=True)
    block = actions_parser.add_parser("block", help=_("block a source address or network"))
    block.add_argument("target", help=_("address or network, e.g. 203.0.113.9 or 203.0.113.0/24"))
    block.add_argument("--ttl", default="1h", help=_("how long (30m, 1h, 7d; default: 1h)"))
    block.add_argument("--reason", required=True, help=_("why: kept in the audit log"))
    block.add_argument("--confirm-wide", action="store_true", help=_("allow wider than /24 or /48"))
    unblock = actions_parser.add_parser("unblock", help=_("lift a block on every gateway"))
    unblock.add_argument("target", help=_("the address or network as it was blocked"))
    unblock.add_argument("--reason", default="lifted", help=_("why: kept in the audit log"))
    isolate = actions_parser.add_parser(
        "isolate", help=_("a host may talk only to the management networks and the SOC")
    )
    isolate.add_argument("target", help=_("an inventory host (web) or an address (10.30.1.57)"))
    isolate.add_argument("--ttl", help=_("how long (30m, 1h, 7d; default: until released)"))
    isolate.add_argument("--reason", required=True, help=_("why: kept in the audit log"))
    release = actions_parser.add_parser("release", help=_("end an isolation"))
    release.add_argument("target", help=_("the host or address as it was isolated"))
    release.add_argument("--reason", default="released", help=_("why: kept in the audit log"))
    listing = actions_parser.add_parser(
        "list", help=_("what is blocked or isolated where, for how long, why")
    )
    reconcile = actions_parser.add_parser(
        "reconcile", help=_("put every decision in force onto the gateways that lack it")
    )
    reconcile.add_argument(
        "--every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=_("repeat every SECONDS (default: once)"),
    )
    reconcile.add_argument("--times", type=int, default=0, help=_("stop after this many rounds"))
    reconcile.add_argument(
        "--metrics-listen",
        metavar="ADDRESS:PORT",
        help=_("with --every: serve the metrics there (a management address)"),
    )
    log = actions_parser.add_parser(
        "log", help=_("the audit log: who did what, why, with what result")
    )
    auto_parser = actions_parser.add_parser(
        "auto", help=_("automatic response to alerts by a rule file (opt-in: enabled: true)")
    )
    auto_parser.add_argument("--rules", required=True, type=Path, help=_("the rule file (YAML)"))
    auto_parser.add_argument(
        "--eve", action="append", required=True, type=Path, help=_("an EVE JSON file (repeatable)")
    )
    auto_parser.add_argument("--every", type=float, default=0.0, metavar="SECONDS")
    auto_parser.add_argument("--times", type=int, default=0, help=_("stop after this many rounds"))
    for sub in (block, unblock, isolate, release):
        sub.add_argument(
            "--verify-from",
            metavar="HOST",
            help=_("then ping --verify-to from this inventory host and read the drop counters"),
        )
        sub.add_argument("--verify-to", metavar="ADDRESS", help=_("the address the probe pings"))
    for sub in (block, unblock, isolate, release, listing, reconcile, log, auto_parser):
        sub.add_argument(
            "-i",
            "--inventory",
            action="append",
            required=True,
            help=_("inventory Ansible uses (repeat for the lab's overlay)"),
        )
        sub.add_argument(
            "--building",
            action="append",
            default=[],
            help=_("only this building's gateways (repeatable)"),
        )
        sub.add_argument("--operator", help=_("who acts (default: SUDO_USER or USER)"))
        sub.add_argument(
            "--state-dir", help=_("decisions and audit log (default: ~/.kastro/respond/DOMAIN)")
        )
        sub.add_argument("--json", action="store_true", help=_("machine-readable output"))
        sub.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        return _handle(args)
    except (DecisionError, gateways.GatewayError, SecretsDirError) as exc:
        print(f"kastro respond {args.action}: {exc}; nothing was changed", file=sys.stderr)
        return 1


def _handle(args: argparse.Namespace) -> int:
    who = operator(args.operator)
    store = DecisionStore(_state_dir(args))
    if args.action == "log":
        return _print_log(store, args.json)
    checked = _checked(args)  # every argument before the inventory is even read
    targets = gateways.load(args.inventory, args.building)
    if args.action == "list":
        rows = actions.listing(store, _with_isolated_hosts(store, targets, args))
        print(json.dumps(rows, ensure_ascii=False) if args.json else _table(rows))
        return 0
    if args.action == "reconcile":
        return _reconcile(store, _with_isolated_hosts(store, targets, args), who, args)
    if args.action == "auto":
        return _auto(store, targets, checked["rules"], args)
    check = _verifier(targets, checked, args)
    if args.action in ("isolate", "release"):
        reports = _isolation(store, targets, checked, who, args, check)
    elif args.action == "block":
        net, ttl, reason = checked["net"], checked["ttl"], checked["reason"]
        reports = [actions.block(store, targets, net, ttl, reason, who, check)]
    else:
        reports = [actions.unblock(store, targets, checked["net"], checked["reason"], who, check)]
    for report in reports:
        _print_report(report, args.json)
    metrics.write(store)
    return 0 if all(report.complete for report in reports) else PARTIAL


def _isolation(
    store: DecisionStore,
    targets: list[gateways.Gateway],
    checked: dict[str, Any],
    who: str,
    args: argparse.Namespace,
    check: actions.Verifier,
) -> list[actions.Report]:
    target = gateways.isolation_target(args.inventory, args.target)
    nets = [_one_address(address) for address in target.addresses]
    reason = checked["reason"]
    if args.action == "isolate":
        ttl = checked["ttl"]
        return actions.isolate(store, targets, target, nets, ttl, reason, who, check)
    return actions.release(store, targets, target, nets, reason, who, check)


def _verifier(
    targets: list[gateways.Gateway], checked: dict[str, Any], args: argparse.Namespace
) -> actions.Verifier:
    """--verify-from HOST --verify-to ADDRESS: the probe, once the change is made."""
    if not checked.get("verify_to"):
        return None
    probe = gateways.probe_host(args.inventory, args.verify_from)
    hosts = list(targets)
    if args.action in ("isolate", "release"):
        found = gateways.isolation_target(args.inventory, args.target).host
        hosts += [found] if found else []
    address = str(checked["verify_to"].network_address)
    return lambda action: verify.verify(hosts, probe, address, action).as_dict()


def _one_address(text: str) -> Network:
    net = parse_target(text)
    if net.num_addresses != 1:
        raise DecisionError(
            tr(
                t(
                    "{net} is a network: isolate one host or address at a time (to stop a "
                    "network's traffic, block it)",
                    net=net,
                )
            )
        )
    return net


def _with_isolated_hosts(
    store: DecisionStore, targets: list[gateways.Gateway], args: argparse.Namespace
) -> list[gateways.Gateway]:
    """The gateways and every managed host an isolation in force is about."""
    names = sorted({d.host for d in store.load().values() if d.host} - {g.name for g in targets})
    found = [gateways.managed_host(args.inventory, name) for name in names]
    return [*targets, *(host for host in found if host)]


def _checked(args: argparse.Namespace) -> dict[str, Any]:
    checked = _checked_action(args)
    if getattr(args, "verify_from", None) or getattr(args, "verify_to", None):
        if not (args.verify_from and args.verify_to):
            raise DecisionError(_("--verify-from and --verify-to go together: give both"))
        checked["verify_to"] = _one_address(args.verify_to)
    return checked


def _checked_action(args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "block":
        return {
            "net": parse_target(args.target, args.confirm_wide),
            "ttl": parse_ttl(args.ttl),
            "reason": check_reason(args.reason),
        }
    if args.action == "unblock":
        return {"net": parse_target(args.target, True), "reason": check_reason(args.reason)}
    if args.action == "isolate":
        return {
            "ttl": parse_ttl(args.ttl) if args.ttl else None,
            "reason": check_reason(args.reason),
        }
    if args.action == "release":
        return {"reason": check_reason(args.reason)}
    if args.action == "reconcile" and args.metrics_listen:
        _check_listen(args.metrics_listen)
    if args.action == "auto":
        try:
            return {"rules": auto.load_rules(args.rules)}
        except auto.RuleError as exc:
            raise DecisionError(str(exc)) from exc
    return {}


def _check_listen(text: str) -> None:
    try:
        metrics.parse_listen(text)
    except ValueError as exc:
        raise DecisionError(
            tr(
                t(
                    "--metrics-listen {text!r}: write ADDRESS:PORT with the controller's "
                    "management address, e.g. 10.20.3.5:9559 or [fd00::5]:9559",
                    text=text,
                )
            )
        ) from exc


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    variables = model_variables(args.inventory[0])
    domain = municipality_id(variables.get("kastro_municipality"))
    return Path(os.environ.get("HOME") or "/root") / ".kastro" / "respond" / domain


def _reconcile(
    store: DecisionStore, targets: list[gateways.Gateway], who: str, args: argparse.Namespace
) -> int:
    if args.metrics_listen:
        from prometheus_client import start_http_server

        address, port = metrics.parse_listen(args.metrics_listen)
        start_http_server(port, addr=address, registry=metrics.registry(store))
    rounds = 0
    while True:
        report = actions.reconcile(store, targets, who)
        _print_report(report, args.json)
        metrics.write(store)
        rounds += 1
        if not args.every or (args.times and rounds >= args.times):
            return 0 if report.complete else PARTIAL
        time.sleep(args.every)


def _auto(
    store: DecisionStore,
    targets: list[gateways.Gateway],
    rules: auto.Rules,
    args: argparse.Namespace,
) -> int:
    if not rules.enabled:
        print(
            f"η αυτόματη απόκριση είναι ανενεργή στο {args.rules} (enabled: true την "
            f"ενεργοποιεί) / automatic response is off in {args.rules} (enabled: true switches "
            "it on)"
        )
        return 0
    responder = auto.Responder(
        store, targets, rules, lambda text: gateways.isolation_target(args.inventory, text)
    )
    rounds = 0
    while True:
        for outcome in auto.run_once(responder, args.eve):
            if outcome["outcome"] != "no rule":
                print(json.dumps(outcome, ensure_ascii=False))
        metrics.write(store)
        rounds += 1
        if not args.every or (args.times and rounds >= args.times):
            return 0
        time.sleep(args.every)


def _print_report(report: actions.Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    done = sum(status in ("ok", "covered") for status in report.gateways.values())
    host = f" ({report.host})" if report.host else ""
    print(
        f"{report.action} {report.target}{host}: {done}/{len(report.gateways)} "
        f"κόμβοι / hosts in {report.seconds:.1f} s"
    )
    for name, status in sorted(report.gateways.items()):
        mark = "✓" if status in ("ok", "covered") else "✗"
        print(f"  {mark} {name}: {status}")
    for name, fixed in sorted(report.reconciled.items()):
        print(
            tr(
                t(
                    "  ↻ {name}: also applied {fixed} (reconciled)",
                    name=name,
                    fixed=", ".join(fixed),
                )
            )
        )
    if report.verification:
        print(_verification_text(report.verification))
    if not report.complete:
        print(
            "  Δεν εφαρμόστηκε παντού: η απόφαση κρατήθηκε· 'kastro respond reconcile' θα την "
            "ολοκληρώσει. / Not applied everywhere: the decision is kept; 'kastro respond "
            "reconcile' finishes it."
        )


def _verification_text(check: dict[str, Any]) -> str:
    drops = ", ".join(f"{name} +{n}" for name, n in sorted(check["dropped"].items()) if n)
    mark = "✓ επαληθεύτηκε / verified" if check["verified"] else "✗ ΔΕΝ επαληθεύτηκε / NOT verified"
    return (
        f"  {mark}: ping {check['target']} από / from {check['probe']}: "
        f"{check['answered'] if check['answered'] is not None else '?'}/3 απαντήσεις / answered; "
        f"απορρίψεις / drops: {drops or 'none'}"
        + (f" ({check['error']})" if check["error"] else "")
    )


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "τίποτα δεν αποκλείεται ή απομονώνεται / nothing is blocked or isolated"
    lines = []
    for row in rows:
        expires = row["expires_in"]
        left = "until lifted" if expires is None else f"{expires // 60}m{expires % 60:02d}s left"
        what = "isolated" if row["kind"] == "isolate" else "blocked"
        host = f" ({row['host']})" if row.get("host") else ""
        lines.append(
            f"{what} {row['target']}{host}: {left}, on "
            f"{', '.join(row['gateways']) or 'no host'}"
            + (f" (MISSING on {', '.join(row['missing_on'])})" if row["missing_on"] else "")
            + f" — {row['operator'] or '?'}: {row['reason']}"
        )
    return "\n".join(lines)


def _print_log(store: DecisionStore, as_json: bool) -> int:
    for record in store.audit_records():
        if as_json:
            print(json.dumps(record, ensure_ascii=False, sort_keys=True))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))
        results = ", ".join(f"{k}: {v}" for k, v in sorted(record["gateways"].items()))
        print(
            f"{when} {record['operator']} {record['action']} {record['target']} "
            f"({record['reason']}) -> {results}"
        )
    return 0
