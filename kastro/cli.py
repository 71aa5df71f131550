"""The `kastro` command: one entry point for admins, the SOC and CI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kastro import __version__
from kastro.i18n import N_, _, speak_argparse, t, tr
from kastro.inventory.errors import InvalidInventoryError
from kastro.lab.hosts import LabError
from kastro.text import format_table

if TYPE_CHECKING:
    from kastro.inventory.project import Planned


class UsageError(Exception):
    """Bad command-line input; the message names the argument and the fix."""


Handler = Callable[[argparse.Namespace], int]


def _cmd_lab_image(args: argparse.Namespace) -> int:
    from kastro.lab.image import ImageBuildError, build_image

    try:
        tag = build_image(force=args.force)
    except ImageBuildError as exc:
        print(f"kastro lab image: {_said(exc)}", file=sys.stderr)
        return 1
    print(tag)
    return 0


def _cmd_lab_up(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    started = time.monotonic()
    overlay = hosts.up(Path(args.inventory), args.lab)
    elapsed = time.monotonic() - started
    print(format_table(hosts.status_rows(args.lab)))
    memory = hosts.memory_usage_bytes(args.lab)
    print(
        tr(
            t(
                "lab '{lab}' is up in {elapsed:.1f}s, using {mib:.0f} MiB of memory",
                lab=args.lab,
                elapsed=elapsed,
                mib=memory / 2**20,
            )
        )
    )
    print(tr(t("inventory overlay: {overlay}", overlay=overlay)))
    print(f"ssh: ssh -F {hosts.state_dir(args.lab) / 'ssh_config'} HOST")
    return 0


def _cmd_lab_down(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    removed = hosts.down(args.lab)
    print(
        tr(t("removed {count} item(s) of lab '{lab}'", count=len(removed), lab=args.lab))
        + (f": {', '.join(removed)}" if removed else "")
    )
    return 0


def _cmd_lab_status(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    print(format_table(hosts.status_rows(args.lab)))
    return 0


def _cmd_lab_report(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    rows = hosts.host_report(args.lab)
    print(format_table(rows))
    memory = hosts.memory_usage_bytes(args.lab)
    print(
        tr(
            t(
                "{count} hosts using {mib:.0f} MiB of memory together",
                count=len(rows),
                mib=memory / 2**20,
            )
        )
    )
    return 0


def _cmd_lab_scores(args: argparse.Namespace) -> int:
    from kastro.lab import scores

    rows = scores.host_scores(args.lab)
    print(format_table(rows))
    print(
        _(
            "ANSSI-BP-028 enhanced (OpenSCAP, Kastro's tailoring) and Lynis, "
            "measured inside each host; a container's kernel is the machine's (the "
            "kernel-level score: tests/vm)"
        )
    )
    return 0


def _cmd_lab_reach(args: argparse.Namespace) -> int:
    from kastro.lab import reach

    attempts = reach.check(Path(args.inventory), args.lab)
    print(format_table(reach.rows(attempts)))
    wrong = [a for a in attempts if not a.ok]
    print(
        tr(t("{count} attempts from the lab's internet hosts, {wrong} not as the model says",
             count=len(attempts), wrong=len(wrong)))
    )  # fmt: skip
    return 1 if wrong or not attempts else 0


def _cmd_lab_failover(args: argparse.Namespace) -> int:
    from kastro.lab import failover

    outcome = failover.run(Path(args.inventory), args.lab)
    print(tr(t("{building}: {first} silent; the traffic moved to {second} after {moved:.1f} s",
               building=outcome.building, first=outcome.first, second=outcome.second,
               moved=outcome.moved_after)))  # fmt: skip
    for label in outcome.reached:
        print(tr(t("  answers from the lab's internet host meanwhile: {service}", service=label)))
    for label in outcome.missed:
        print(tr(t("  !! does not answer meanwhile: {service}", service=label)))
    print(tr(t("{first} answers again; the traffic came back to it after {back:.1f} s",
               first=outcome.first, back=outcome.back_after)))  # fmt: skip
    return 1 if outcome.missed or not outcome.reached else 0


def _cmd_lab_attack(args: argparse.Namespace) -> int:
    from kastro.lab import attack

    outcome = attack.run(Path(args.inventory), args.lab, timeout=args.timeout)
    print(attack.report(outcome, args.lab))
    if not (outcome.alerts and outcome.subjects):
        print(
            f"kastro lab attack: μετά από {outcome.seconds:.0f} s λείπει η ειδοποίηση ή το "
            "e-mail / the alert or the e-mail is missing; see journalctl -u kastro-monitor "
            "on the sensor and -u prometheus-alertmanager on the monitoring host",
            file=sys.stderr,
        )
        return 1
    if args.contain:
        done = attack.contain(Path(args.inventory), args.lab, outcome)
        print(attack.containment_report(done, args.lab))
        if not (done.report["complete"] and done.before.get("answered")):
            print(
                "kastro lab attack: ο αποκλεισμός δεν επαληθεύτηκε / the block was not verified",
                file=sys.stderr,
            )
            return 1
    if args.report:
        return _lab_incident(args, attack.save_alerts(args.lab, outcome))
    return 0


def _lab_incident(args: argparse.Namespace, saved: tuple[Path, list[str]]) -> int:
    """`kastro incident open` for the attack's alerts, as an admin would type it."""
    from kastro.lab.hosts import state_dir

    path, fingerprints = saved
    argv = ["incident", "open", "-i", str(args.inventory), "--alerts", str(path),
            "-i", str(state_dir(args.lab) / "inventory.yml"),
            "--state-dir", str(state_dir(args.lab) / "incidents"), "--publish",
            "--description", "Σάρωση θυρών αισθητήρα από το διαδίκτυο (kastro lab attack) / "
            "a port scan of a sensor from the internet (kastro lab attack)"]  # fmt: skip
    for fingerprint in fingerprints:
        argv += ["--from-alert", fingerprint]
    print("==> NIS2: kastro " + " ".join(argv))
    parsed = build_parser().parse_args(argv)
    handler: Handler = parsed.handler
    return handler(parsed)


def _cmd_lab_capture(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    iface = hosts.capture(Path(args.inventory), args.lab, args.network, args.sensor)
    print(
        tr(
            t(
                "{network} is mirrored to {sensor}:{iface}",
                network=args.network,
                sensor=args.sensor,
                iface=iface,
            )
        )
    )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from kastro.inventory.project import validate_inventory

    try:
        model = validate_inventory(Path(args.inventory)).model
    except InvalidInventoryError as exc:
        if args.format != "json":
            raise
        errors = [dataclasses.asdict(error) for error in exc.errors]
        print(json.dumps({"valid": False, "errors": errors}, ensure_ascii=False, indent=2))
        return 1
    counts = {
        "buildings": len(model.buildings),
        "zones": len(model.zones),
        "links": len(model.links),
        "hosts": len(model.hosts),
        "teleworkers": len(model.teleworkers),
        "policy_rules": len(model.policy),
    }
    if args.format == "json":  # for CI: one object, the errors with their fields
        print(json.dumps({"valid": True, "errors": [], **counts}, indent=2))
        return 0
    said = ", ".join(f"{n} {_(COUNTED[name])}" for name, n in counts.items())
    print(
        tr(
            t(
                "{inventory}: valid. {said}; the committed plan is current.",
                inventory=args.inventory,
                said=said,
            )
        )
    )
    return 0


COUNTED = {"buildings": N_("buildings"), "zones": N_("zones"), "links": N_("links"),
           "hosts": N_("hosts"), "teleworkers": N_("teleworkers"),
           "policy_rules": N_("policy rules")}  # fmt: skip


def _cmd_init(args: argparse.Namespace) -> int:
    from kastro.inventory.project import plan_inventory, write_plan
    from kastro.inventory.starter import StarterError, write_starter

    target = Path(args.directory)
    title = args.title or target.name.replace("-", " ").title()
    try:
        written = write_starter(target, title, args.domain)
    except StarterError as exc:
        raise UsageError(_said(exc)) from exc
    try:
        write_plan(target, plan_inventory(target))
    except BaseException:
        shutil.rmtree(target)  # nothing half-made is left behind
        raise
    for path in written:
        print(f"  + {path}")
    print(tr(t(
        "{target}: a starter inventory for {title}. Next: describe your buildings, links and "
        "people in {target}/group_vars/all (docs/inventory.md), then\n"
        "  kastro plan -i {target}    (every error at once, and what will change)\n"
        "  kastro apply -i {target}   (writes the plan: review it and commit it)",
        target=target, title=title,
    )))  # fmt: skip
    return 0


def _cmd_teleworker(args: argparse.Namespace) -> int:
    from kastro.inventory import teleworkers

    inventory = Path(args.inventory)
    try:
        if args.teleworker_command == "add":
            done = teleworkers.add(inventory, args.name, args.group, args.public_key)
        elif args.teleworker_command == "revoke":
            done = teleworkers.revoke(inventory, args.id)
        else:
            done = teleworkers.rekey(inventory, args.id, args.public_key)
    except teleworkers.TeleworkerError as exc:
        raise UsageError(_said(exc)) from exc
    except InvalidInventoryError as exc:
        print(exc.report(), file=sys.stderr)
        print(
            "Τίποτα δεν άλλαξε / nothing changed: the file was put back as it was.", file=sys.stderr
        )
        return 1
    print(tr(done.message))
    for step in done.next_steps:
        print(f"  {tr(step)}")
    return 0


def _cmd_show_host(args: argparse.Namespace) -> int:
    from kastro.inventory.project import validate_inventory
    from kastro.inventory.show import UnknownHostError, show_host

    planned = validate_inventory(Path(args.inventory))
    try:
        lines = show_host(planned.model, planned.result.data, args.name)
    except UnknownHostError as exc:
        raise UsageError(_said(exc)) from exc
    print("\n".join(lines))
    return 0


def _planned(args: argparse.Namespace) -> Planned:
    from kastro.inventory.project import plan_inventory

    planned = plan_inventory(Path(args.inventory), frozenset(args.renumber))
    for line in planned.result.added:
        print(f"  + {line}")
    for line in planned.result.moved:
        print(tr(t("  ~ {line} (renumbered)", line=line)))
    for line in planned.result.removed:
        print(tr(t("  - {line} (released)", line=line)))
    return planned


def _cmd_plan(args: argparse.Namespace) -> int:
    """What `kastro apply` would write (Terraform's plan): nothing is written here."""
    planned = _planned(args)
    if planned.stale:
        said = t("the plan is out of date: {files}", files=", ".join(planned.stale))
        if args.check:
            print(tr(said), file=sys.stderr)
            return 1
        print(tr(said))
        print(tr(t(
            "nothing written: review the lines above, then run 'kastro apply -i {inventory}'",
            inventory=args.inventory,
        )))  # fmt: skip
    else:
        print(_("the plan is current"))
    _reports(args, planned)  # the old flags of plan: `kastro show policy|matrix|graph` now
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    """Write the plan and the generated hosts file (only Kastro's own files)."""
    from kastro.inventory.project import write_plan

    planned = _planned(args)
    if not planned.stale:
        print(_("the plan is current; nothing written"))
        return 0
    write_plan(Path(args.inventory), planned)
    written = [p for p in planned.stale if Path(p).exists()]
    print(tr(t("wrote {files}: review the change and commit it", files=", ".join(written))))
    for gone in sorted(set(planned.stale) - set(written)):
        print(tr(t(
            "removed {file}: an older 'kastro plan' wrote it; its hosts are in the new file",
            file=gone,
        )))  # fmt: skip
    return 0


def _reports(args: argparse.Namespace, planned: Planned) -> None:
    from kastro.inventory.graph import topology_dot
    from kastro.inventory.project import describe_policy, policy_matrix, render_graph

    if getattr(args, "policy", False):
        print(_("Policy:"))
        for line in describe_policy(planned.model):
            print(f"  - {tr(line)}")
    if getattr(args, "matrix", False):
        print(_("Reachability between zones allowed by the policy (the firewall enforces it):"))
        print(format_table(policy_matrix(planned.model)))
    if getattr(args, "graph", None):  # last: a missing Graphviz must not cost the output above
        view = {"building": getattr(args, "building", None) or "",
                "district": getattr(args, "district", None) or ""}  # fmt: skip
        try:
            render_graph(topology_dot(planned.model, planned.result.data, **view), Path(args.graph))
        except ValueError as exc:  # an unknown view, picture format, or no Graphviz
            raise UsageError(tr(exc.args[0])) from exc
        print(tr(t("topology picture: {file}", file=args.graph)))


def _cmd_show_report(args: argparse.Namespace) -> int:
    """`kastro show policy|matrix|graph FILE`: the reports, from a current plan."""
    from kastro.inventory.project import validate_inventory

    if args.show_command == "graph":
        args.graph = args.file
    _reports(args, validate_inventory(Path(args.inventory)))
    return 0


def _cmd_inventory_export(args: argparse.Namespace) -> int:
    from kastro.inventory.assets import export_assets
    from kastro.inventory.project import validate_inventory

    planned = validate_inventory(Path(args.inventory))
    text = export_assets(planned.model, planned.result.data, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_inventory_article21(args: argparse.Namespace) -> int:
    from kastro.inventory.project import validate_inventory
    from kastro.nis2 import measures

    model = validate_inventory(Path(args.inventory)).model
    name = model.municipality.name if model.municipality else ""
    domain = model.municipality.domain if model.municipality else ""
    home = Path(os.environ.get("HOME") or "/root")
    state = Path(args.state_dir) if args.state_dir else home / ".kastro" / "incidents" / domain
    found = measures.article21(model, measures.controller_facts(state))
    text = measures.as_json(found) if args.format == "json" else measures.as_html(found, name)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from monitors.run import MonitorUsageError, run

    try:
        return run(args)
    except MonitorUsageError as exc:
        raise UsageError(_said(exc)) from exc


def _cmd_host_archive(args: argparse.Namespace) -> int:
    from kastro.controller.host_archive import BuildDirError, build_json

    try:
        print(build_json(Path(args.output)))
    except BuildDirError as exc:
        print(tr(t("kastro host-archive: {exc}; nothing was written", exc=exc)), file=sys.stderr)
        return 2
    return 0


def _cmd_monitoring_credentials(args: argparse.Namespace) -> int:
    from kastro.monitoring.credentials import CredentialsError, ensure_json

    try:
        print(ensure_json(Path(args.directory), args.domain, args.host, args.address, args.client))
    except CredentialsError as exc:
        raise UsageError(tr(t("{exc}; nothing was written", exc=exc))) from exc
    return 0


def _cmd_dashboards(args: argparse.Namespace) -> int:
    import json

    from kastro.monitoring.dashboards import dashboards

    directory = Path(args.directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in dashboards().items():
        (directory / name).write_text(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    print(
        tr(
            t(
                "{count} Grafana dashboards in {directory}",
                count=len(dashboards()),
                directory=directory,
            )
        )
    )
    return 0


def _inventory_argument(
    parser: argparse.ArgumentParser, help_text: str, default: str | None = None
) -> None:
    """The inventory as Ansible users type it (-i DIR) or as before (a positional DIR)."""
    said = _(help_text)
    parser.add_argument(
        "inventory", nargs="?", default=None, help=tr(t("{text} (or -i DIR)", text=said))
    )
    parser.add_argument(
        "-i", "--inventory", dest="inventory_option", metavar="DIR", default=None,
        help=tr(t("{text} (default: {default})", text=said, default=default)) if default else said,
    )  # fmt: skip
    parser.set_defaults(inventory_default=default)


def _resolve_inventory(args: argparse.Namespace) -> None:
    """One inventory from -i or the positional form, or a usage error saying how to give it."""
    if not hasattr(args, "inventory_option"):
        return
    given = {value for value in (args.inventory, args.inventory_option) if value}
    if len(given) > 1:
        raise UsageError(
            tr(
                t(
                    "two inventories given ({given}): give one, -i DIR",
                    given=", ".join(sorted(given)),
                )
            )
        )
    args.inventory = given.pop() if given else args.inventory_default
    if args.inventory is None:
        raise UsageError(_("give the inventory directory: -i inventory/NAME"))


def _shows_help(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command given without its subcommand: its help, not an error."""

    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show


REPORTS = {
    "policy": N_("print the policy in plain words"),
    "matrix": N_("print which zones may reach which (a table)"),
    "graph": N_("draw the topology (.svg, .png, .pdf or .dot)"),
}


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    """plan's report flags, kept for one release beside `kastro show policy|matrix|graph`."""
    said = {name: tr(t("{text} (also: kastro show {name})", text=_(text), name=name))
            for name, text in REPORTS.items()}  # fmt: skip
    parser.add_argument("--graph", metavar="FILE", help=said["graph"])
    parser.add_argument("--policy", action="store_true", help=said["policy"])
    parser.add_argument("--matrix", action="store_true", help=said["matrix"])


def build_parser() -> argparse.ArgumentParser:
    speak_argparse()
    parser = argparse.ArgumentParser(
        prog="kastro",
        description=_("Security and network automation for municipalities."),
    )
    parser.add_argument("--version", action="version", version=f"kastro {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.set_defaults(handler=_shows_help(parser))  # bare `kastro`: the commands, exit 0

    validate = commands.add_parser(
        "validate", help=_("check the inventory (every error at once) before any host is touched")
    )
    _inventory_argument(validate, "inventory directory, e.g. inventory/example")
    validate.add_argument(
        "--format", choices=("text", "json"), default="text",
        help=_("text for people, json for CI (the errors with file, line, path, message, fix; "
        "default: text)"),
    )  # fmt: skip
    validate.set_defaults(handler=_cmd_validate)

    plan = commands.add_parser(
        "plan",
        help=_("show what 'kastro apply' would write to the address plan (writes nothing)"),
    )
    apply = commands.add_parser(
        "apply",
        help=_("write the address plan and the hosts file (stable: allocations never move)"),
    )
    for sub in (plan, apply):
        _inventory_argument(sub, "inventory directory, e.g. inventory/example")
        sub.add_argument(
            "--renumber",
            action="append",
            default=[],
            metavar="KEY",
            help=_("give one allocation new space, e.g. kastro_plan.zones.library.guest "
            "(repeatable)"),
        )  # fmt: skip
    plan.add_argument(
        "--check", action="store_true", help=_("exit 1 when the plan is out of date (for CI)")
    )
    _report_arguments(plan)
    plan.set_defaults(handler=_cmd_plan)
    apply.set_defaults(handler=_cmd_apply)

    inventory = commands.add_parser("inventory", help=_("asset inventory (NIS2, law 5160/2024)"))
    inventory_commands = inventory.add_subparsers(
        dest="inventory_command", metavar="INVENTORY_COMMAND"
    )
    inventory.set_defaults(handler=_shows_help(inventory))
    export = inventory_commands.add_parser(
        "export", help=_("the asset register: every building, zone, link, host and device")
    )
    _inventory_argument(export, "inventory directory")
    export.add_argument(
        "--format",
        choices=("csv", "json", "html"),
        default="csv",
        help=_("csv, json or html: a report to print (default: csv)"),
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", help=_("write here instead of standard output")
    )
    export.set_defaults(handler=_cmd_inventory_export)
    measures = inventory_commands.add_parser(
        "article21", help=_("NIS2 article 21(2) (a)-(j): Kastro's evidence and what stays manual")
    )
    _inventory_argument(measures, "inventory directory")
    measures.add_argument("--format", choices=("html", "json"), default="html")
    measures.add_argument("-o", "--output", metavar="FILE", help=_("instead of standard output"))
    measures.add_argument(
        "--state-dir", help=_("the incident log to count (default: ~/.kastro/incidents/DOMAIN)")
    )
    measures.set_defaults(handler=_cmd_inventory_article21)

    from monitors.run import add_arguments as add_monitor_arguments

    monitor = commands.add_parser(
        "monitor", help=_("packet-level anomaly detection: EVE alerts and Prometheus metrics")
    )
    add_monitor_arguments(monitor, _)
    monitor.set_defaults(handler=_cmd_monitor)

    archive = commands.add_parser(
        "host-archive",
        help=_("build kastro-host.pyz, the host programs the roles install (same bytes each time)"),
    )
    archive.add_argument(
        "output", help=_("where to write it, e.g. ~/.kastro/build/kastro-host.pyz")
    )
    archive.set_defaults(handler=_cmd_host_archive)

    boards = commands.add_parser(
        "dashboards", help=_("write Kastro's Grafana dashboards (JSON) into a directory")
    )
    boards.add_argument("directory", help=_("e.g. dashboards/ (import them into Grafana)"))
    boards.set_defaults(handler=_cmd_dashboards)

    credentials = commands.add_parser(
        "monitoring-credentials",
        help=_("make the monitoring host's TLS certificate and web password (kept, 0600)"),
    )
    credentials.add_argument("directory", help=_("the municipality's monitoring secrets directory"))
    credentials.add_argument("--domain", required=True, help=_("the municipality's DNS domain"))
    credentials.add_argument("--host", required=True, help=_("the monitoring host's name"))
    credentials.add_argument(
        "--address", action="append", default=[], help=_("an address in its certificate (repeat)")
    )
    credentials.add_argument(
        "--client",
        action="append",
        default=[],
        help=_("a host that gets a client certificate, e.g. a sensor shipping events (repeat)"),
    )
    credentials.set_defaults(handler=_cmd_monitoring_credentials)

    init = commands.add_parser(
        "init", help=_("start a municipality: a commented starter inventory that validates")
    )
    init.add_argument(
        "directory", help=_("the new inventory directory, e.g. inventory/dimos-kastrou")
    )
    init.add_argument("--domain", required=True, help=_("the municipality's DNS domain"))
    init.add_argument(
        "--title", help=_("its name as people write it (default: from the directory)")
    )
    init.set_defaults(handler=_cmd_init)

    worker = commands.add_parser(
        "teleworker",
        help=_("add, revoke or rekey a teleworker (edits the inventory, keeps comments)"),
    )
    worker_commands = worker.add_subparsers(dest="teleworker_command", metavar="ACTION")
    worker.set_defaults(handler=_shows_help(worker))
    worker_add = worker_commands.add_parser("add", help=_("a new teleworker with the next free id"))
    worker_add.add_argument("--name", required=True, help=_("the person's name"))
    worker_add.add_argument("--group", required=True, help=_("a kastro_teleworker_groups name"))
    worker_revoke = worker_commands.add_parser("revoke", help=_("stop a person's access at once"))
    worker_rekey = worker_commands.add_parser("rekey", help=_("new keys for a person"))
    for sub in (worker_revoke, worker_rekey):
        sub.add_argument("id", help=_("the teleworker's id, e.g. tw-0007"))
    for sub in (worker_add, worker_rekey):
        sub.add_argument("--public-key", help=_("the employee's own WireGuard public key"))
    for sub in (worker_add, worker_revoke, worker_rekey):
        _inventory_argument(sub, "inventory directory")
        sub.set_defaults(handler=_cmd_teleworker)

    show = commands.add_parser("show", help=_("what one host of the model will get"))
    show_commands = show.add_subparsers(dest="show_command", metavar="SHOW_COMMAND")
    show.set_defaults(handler=_shows_help(show))
    show_host = show_commands.add_parser(
        "host", help=_("a host's place, addresses, groups, roles and the policy rules of its zones")
    )
    show_host.add_argument("name", help=_("the host's name in the model, e.g. fileserver"))
    _inventory_argument(show_host, "inventory directory", default="inventory/example")
    show_host.set_defaults(handler=_cmd_show_host)
    for name, said in REPORTS.items():
        report = show_commands.add_parser(name, help=_(said))
        _inventory_argument(report, "inventory directory", default="inventory/example")
        if name == "graph":
            report.add_argument("file", help=_("the picture: .svg, .png, .pdf or .dot"))
            view = report.add_mutually_exclusive_group()
            view.add_argument(
                "--building", metavar="NAME", help=_("one building in detail, with its neighbours")
            )
            view.add_argument("--district", metavar="NAME",
                              help=_("the buildings of one district (district: of "
                                     "kastro_buildings) and the links leaving it"))  # fmt: skip
        report.set_defaults(handler=_cmd_show_report, **{name: name != "graph"})

    from kastro.backup.cli import add_parser as add_backup

    add_backup(commands)

    from kastro.respond.cli import add_parser as add_respond

    add_respond(commands)

    from kastro.nis2.cli import add_parser as add_incident

    add_incident(commands)

    lab = commands.add_parser("lab", help=_("local lab of real Debian 12 test hosts"))
    lab_commands = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lab.set_defaults(handler=_shows_help(lab))
    image = lab_commands.add_parser(
        "image",
        help=_("build the Debian 12 systemd base image (reused while its recipe is unchanged)"),
    )
    image.add_argument(
        "--force", action="store_true", help=_("rebuild even if the recipe is unchanged")
    )
    image.set_defaults(handler=_cmd_lab_image)

    lab_up = lab_commands.add_parser(
        "up", help=_("start the inventory's hosts and networks (idempotent)")
    )
    _inventory_argument(lab_up, "inventory directory", default="inventory/example")
    lab_down = lab_commands.add_parser(
        "down", help=_("remove everything this lab created, nothing else")
    )
    lab_status = lab_commands.add_parser(
        "status", help=_("hosts, networks and addresses of the lab")
    )
    lab_report = lab_commands.add_parser(
        "report", help=_("what the playbooks deployed on each host")
    )
    lab_scores = lab_commands.add_parser(
        "scores",
        help=_("OpenSCAP ANSSI and Lynis scores of each managed host (installs the tools)"),
    )
    lab_capture = lab_commands.add_parser(
        "capture", help=_("mirror a zone or link network's traffic to a sensor host")
    )
    lab_capture.add_argument(
        "network", help=_("e.g. zone:cityhall.servers, link:cityhall-kep, internet")
    )
    lab_capture.add_argument("--sensor", default="sensor1", help=_("host that receives the mirror"))
    lab_capture.add_argument(
        "-i", "--inventory", default="inventory/example", help=_("inventory directory")
    )
    lab_reach = lab_commands.add_parser(
        "reach",
        help=_(
            "what the internet reaches: the lab's internet hosts try each published service "
            "(one connection per port) and a port that is not published"
        ),
    )
    _inventory_argument(lab_reach, "inventory directory of the lab")
    lab_failover = lab_commands.add_parser(
        "failover",
        help=_(
            "an ISP outage: the lab's router of a building's first ISP forwards nothing for a "
            "while; how fast the traffic moves to the second ISP and back"
        ),
    )
    _inventory_argument(lab_failover, "inventory directory of the lab")
    lab_attack = lab_commands.add_parser(
        "attack",
        help=_(
            "the demo's attack: the lab's attacker scans a sensor once (nmap -sS, ports 1-200); "
            "wait for the alert in Alertmanager and the SOC's e-mail"
        ),
    )
    _inventory_argument(lab_attack, "inventory directory of the lab")
    lab_attack.add_argument("--timeout", type=float, default=120.0, help=_("seconds to wait"))
    lab_attack.add_argument(
        "--contain",
        action="store_true",
        help=_("then block the scan's source on every gateway (kastro respond) and show it stop"),
    )
    lab_attack.add_argument(
        "--report",
        action="store_true",
        help=_(
            "then open a NIS2 incident from the alerts and draft its early warning "
            "(kastro incident open, in the lab's state directory)"
        ),
    )
    for sub, handler in (
        (lab_reach, _cmd_lab_reach),
        (lab_failover, _cmd_lab_failover),
        (lab_attack, _cmd_lab_attack),
        (lab_up, _cmd_lab_up),
        (lab_down, _cmd_lab_down),
        (lab_status, _cmd_lab_status),
        (lab_report, _cmd_lab_report),
        (lab_scores, _cmd_lab_scores),
        (lab_capture, _cmd_lab_capture),
    ):
        sub.add_argument("--lab", default="kastro", help=_("lab name (label and container prefix)"))
        sub.set_defaults(handler=handler)

    return parser


def _said(exc: Exception) -> str:
    """An error's message in the admin's language (a Text, or a message id)."""
    return tr(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    if args.command == "lab":
        from kastro.lab import use_podman_settings

        use_podman_settings()
    try:
        _resolve_inventory(args)
        return handler(args)
    except UsageError as exc:
        print(f"kastro {args.command}: {_said(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `kastro ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a file the command must read or write: name it, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        said = tr(t("{problem}; check the path and its permissions", problem=exc.strerror or exc))
        print(f"kastro {args.command}: {where}{said}", file=sys.stderr)
        return 1
    except InvalidInventoryError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    except LabError as exc:
        print(f"kastro {args.command}: {_said(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_("interrupted"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
