"""`kastro incident`: open, update, close and export NIS2 incidents; every command checks all
its input before it writes, and writes one block of log records (all or nothing).

Exit status: 0 done; 1 refused (bad argument, unknown alert or incident, broken log): nothing
written; 2 written here but not published to the monitoring hosts (--publish): run
`kastro incident publish` again when they answer.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from kastro.i18n import _, t, tr
from kastro.nis2 import alerts, deadlines, drafts, metrics
from kastro.nis2.bundle import bundle, referenced
from kastro.nis2.incidents import (
    DAMAGE,
    DISRUPTION,
    MALICIOUS,
    TITLE_MAX,
    Book,
    Incident,
    IncidentError,
    Triage,
    check_text,
)
from kastro.nis2.log import IncidentLog, LogError

ARTEFACT_MAX = 512 * 1024 * 1024


def add_parser(commands: Any) -> None:
    incident = commands.add_parser(
        "incident",
        help=_("NIS2 incidents: open, update, close; Greek/English report drafts with deadlines"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = incident.add_subparsers(dest="action", metavar="ACTION", required=True)
    opened = _with_common(
        actions.add_parser(
            "open", help=_("a new incident (from an alert or by hand): drafts the early warning")
        )
    )
    opened.add_argument(
        "--from-alert",
        metavar="FINGERPRINT",
        action="append",
        default=[],
        help=_("an alert's fingerprint (repeatable); needs --alerts"),
    )
    opened.add_argument("--alerts", type=Path, help=_("Alertmanager's /api/v2/alerts, saved"))
    opened.add_argument("--title", default="", help=_("default: the first alert's summary"))
    opened.add_argument("--description", default="")
    opened.add_argument("--aware", help=_("when it became known (default: now; Athens time)"))
    opened.add_argument("--malicious", choices=MALICIOUS, default="suspected")
    opened.add_argument("--cross-border", action="store_true", help=_("may affect other states"))
    update = _with_common(
        actions.add_parser(
            "update", help=_("triage and more alerts: drafts the 72-hour notification")
        )
    )
    update.add_argument("id")
    update.add_argument("--from-alert", metavar="FINGERPRINT", action="append", default=[])
    update.add_argument("--alerts", type=Path)
    update.add_argument(
        "--disruption",
        choices=DISRUPTION,
        required=True,
        help=_("operational disruption of the municipality's services"),
    )
    update.add_argument(
        "--damage-to-others",
        choices=DAMAGE,
        default="none",
        help=_("material or non-material damage to citizens or businesses"),
    )
    update.add_argument("--people-affected", type=int, default=0)
    update.add_argument("--financial-loss", type=int, default=0, metavar="EUR")
    update.add_argument(
        "--personal-data",
        action="store_true",
        help=_("personal data involved (a GDPR notice to the DPA is due too)"),
    )
    update.add_argument("--malicious", choices=MALICIOUS)
    update.add_argument("--cross-border", choices=("yes", "no"))
    sent = _with_common(
        actions.add_parser(
            "sent",
            help=_("record that a person submitted a stage (restarts the month for the final)"),
        )
    )
    sent.add_argument("id")
    sent.add_argument("--stage", choices=deadlines.STAGES, required=True)
    sent.add_argument("--at", help=_("when (default: now; Athens time)"))
    close = _with_common(
        actions.add_parser("close", help=_("the incident is handled: drafts the final report"))
    )
    close.add_argument("id")
    close.add_argument("--root-cause", required=True, help=_("type of threat or root cause"))
    close.add_argument("--mitigation", required=True, help=_("mitigation applied and ongoing"))
    close.add_argument("--at", help=_("when it was handled (default: now; Athens time)"))
    draft = _with_common(
        actions.add_parser("draft", help=_("draft one stage again (e.g. the progress report)"))
    )
    draft.add_argument("id")
    draft.add_argument("--stage", choices=deadlines.STAGES, required=True)
    attach = _with_common(
        actions.add_parser(
            "attach", help=_("keep an artefact (pcap, EVE extract, scan report) by its SHA-256")
        )
    )
    attach.add_argument("id")
    attach.add_argument("file", type=Path)
    attach.add_argument("--kind", choices=("pcap", "eve", "scan", "log", "other"), default="other")
    show = _with_common(actions.add_parser("show", help=_("one incident: clocks, alerts, drafts")))
    show.add_argument("id")
    _with_common(actions.add_parser("list", help=_("every incident and its next deadline")))
    export = _with_common(
        actions.add_parser(
            "export", help=_("one incident as a tar bundle that rebuilds byte-identically")
        )
    )
    export.add_argument("id")
    export.add_argument("--output", type=Path, required=True)
    _with_common(actions.add_parser("verify", help=_("check the log's hash chain and artefacts")))
    _with_common(
        actions.add_parser(
            "publish",
            help=_("the deadlines to the monitoring hosts' Prometheus (alerts 6 h and 1 h before)"),
        )
    )
    for parser in (opened, update, sent, close):
        parser.add_argument(
            "--publish",
            action="store_true",
            help=_("then publish the deadlines to the monitoring hosts (as 'publish' does)"),
        )
    incident.set_defaults(handler=run)


def _with_common(parser: argparse.ArgumentParser) -> Any:
    parser.add_argument(
        "-i",
        "--inventory",
        required=True,
        action="append",
        metavar="DIR",
        help=_(
            "the municipality's inventory, e.g. inventory/example; more -i: "
            "Ansible inventories whose ansible_host addresses also name the "
            "model's hosts (the lab's overlay)"
        ),
    )
    parser.add_argument(
        "--state-dir", help=_("the incident log and drafts (default: ~/.kastro/incidents/DOMAIN)")
    )
    return parser


class Session:
    """One command's view: the inventory's facts and the municipality's incident book."""

    def __init__(self, args: argparse.Namespace, now: dt.datetime) -> None:
        from kastro.controller.secrets import municipality_id
        from kastro.inventory.project import validate_inventory

        planned = validate_inventory(Path(args.inventory[0]))
        model, plan = planned.model, planned.result.data
        assert model.municipality is not None  # a valid inventory has one
        domain = municipality_id({"domain": model.municipality.domain})
        home = Path(os.environ.get("HOME") or "/root")
        self.directory = (
            Path(args.state_dir) if args.state_dir else home / ".kastro" / "incidents" / domain
        )
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.book = Book(IncidentLog(self.directory))
        self.now = now
        nis2 = model.nis2
        descriptions = {b.name: b.description for b in model.buildings.values()}
        descriptions |= {h.name: h.description for h in model.hosts}
        supernets = [
            str(n) for n in (*model.municipality.supernets_v4, *model.municipality.supernets_v6)
        ]
        self.context = drafts.Context(
            municipality=model.municipality.name,
            domain=domain,
            entity={"legal_entity": nis2.entity} if nis2 and nis2.entity else {},
            csirt=nis2.csirt if nis2 else {},
            officer=nis2.security_officer if nis2 else {},
            plan=alerts.Plan(plan, supernets, _reached_at(model, args.inventory[1:])),
            descriptions=descriptions,
            services={h.name: h.services for h in model.hosts},
            service_descriptions={n: s.description for n, s in model.services.items()},
        )
        self.loss_threshold = nis2.loss_threshold_eur if nis2 else 100_000

    def draft(self, incident: Incident, stage: str) -> tuple[list[dict[str, Any]], list[Path]]:
        """Both languages' JSON and HTML, checked against the schema, kept as artefacts; the log
        records and the readable copies under drafts/ID/."""
        records, paths = [], []
        folder = self.directory / "drafts" / incident.id
        (self.directory / "drafts").mkdir(exist_ok=True, mode=0o700)
        folder.mkdir(exist_ok=True, mode=0o700)
        for language in drafts.LANGUAGES:
            body = drafts.report(incident, stage, language, self.context, self.now)
            drafts.check(body)
            files = {}
            for suffix, data in (("json", drafts.as_json(body)), ("html", drafts.as_html(body))):
                digest = self.book.log.put_bytes(data)
                name = f"{stage}.{language}.{suffix}"
                _write_private(folder / name, data)
                files[name] = digest
                paths.append(folder / name)
            records.append(
                _record(
                    incident.id, "draft", {"stage": stage, "language": language, "files": files}
                )
            )
        return records, paths


def _reached_at(model: Any, inventories: list[str]) -> dict[str, str]:
    """Each model host's `ansible_host` that is an IP address -> the host: the address Kastro
    reaches it at, which an alert may name (the model's own, then the other inventories')."""
    found = {}
    names = {h.name for h in model.hosts}
    pairs = [(h.name, h.ansible_host) for h in model.hosts if h.ansible_host]
    if inventories:
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader

        manager = InventoryManager(loader=DataLoader(), sources=inventories)
        pairs += [(h.name, h.vars.get("ansible_host")) for h in manager.get_hosts()]
    for name, value in pairs:
        with contextlib.suppress(ValueError):
            if name in names:
                found[str(ipaddress.ip_address(str(value)))] = name
    return found


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    temporary.replace(path)


def _record(incident: str, event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"incident": incident, "event": event, "data": data, "operator": _operator()}


def _operator() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _time(text: str | None, now: dt.datetime, what: str) -> dt.datetime:
    if text is None:
        return now
    try:
        when = deadlines.parse_time(text)
    except deadlines.DeadlineError as error:
        raise IncidentError(f"{what}: {error}") from error
    if when > now + dt.timedelta(minutes=5):
        raise IncidentError(
            tr(t("{what} {text}: in the future; write when it happened", what=what, text=text))
        )
    return when


def _linked(args: argparse.Namespace, already: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not args.from_alert:
        return []
    if args.alerts is None:
        raise IncidentError(_("--from-alert needs --alerts FILE (Alertmanager's /api/v2/alerts)"))
    known = alerts.load(args.alerts)
    seen = {a["fingerprint"] for a in already}
    found = [alerts.find(known, fingerprint) for fingerprint in dict.fromkeys(args.from_alert)]
    return [a for a in found if a["fingerprint"] not in seen]


def cmd_open(session: Session, args: argparse.Namespace) -> list[str]:
    linked = _linked(args, [])
    if not linked and not args.title:
        raise IncidentError(_("write --title or link an alert with --from-alert and --alerts"))
    title = check_text(
        args.title or linked[0]["summary_el"] or linked[0]["labels"].get("alertname", ""),
        "--title",
        TITLE_MAX,
        required=True,
    )
    description = check_text(args.description, "--description")
    aware = _time(args.aware, session.now, "--aware")
    name = session.book.next_id(aware)
    records = [
        _record(
            name,
            "opened",
            {
                "title": title,
                "description": description,
                "aware": deadlines.iso(aware),
                "malicious": args.malicious,
                "cross_border": args.cross_border,
            },
        )
    ]
    records += [_record(name, "alert", alert) for alert in linked]
    return _commit(session, records, name, "early_warning")


def cmd_update(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    for number, what in (
        (args.people_affected, "--people-affected"),
        (args.financial_loss, "--financial-loss"),
    ):
        if not 0 <= number <= 10**10:
            raise IncidentError(
                tr(t("{what} {number}: write a number from 0", what=what, number=number))
            )
    linked = _linked(args, incident.alerts)
    triage = Triage(
        args.disruption,
        args.damage_to_others,
        args.people_affected,
        args.financial_loss,
        args.personal_data,
        session.loss_threshold,
    )
    answers = {k: v for k, v in vars(triage).items()}
    data: dict[str, Any] = {"answers": answers}
    if args.malicious:
        data["malicious"] = args.malicious
    if args.cross_border:
        data["cross_border"] = args.cross_border == "yes"
    records = [_record(incident.id, "alert", alert) for alert in linked]
    records.append(_record(incident.id, "triage", data))
    lines = _commit(session, records, incident.id, "notification")
    if triage.personal_data:
        lines.append(
            "  προσωπικά δεδομένα: ειδοποίηση στην ΑΠΔΠΧ εντός 72 ωρών (GDPR άρθρο 33) / "
            "personal data: notify the Hellenic DPA within 72 h (GDPR art. 33)"
        )
    if not triage.significant:
        lines.append(
            "  η εκτίμηση δεν το κρίνει σημαντικό / the triage does not find it "
            "significant: a person decides whether to notify"
        )
    return lines


def cmd_sent(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    at = _time(args.at, session.now, "--at")
    if at < incident.aware:
        raise IncidentError(tr(t("--at {at}: before the incident became known", at=args.at)))
    if not any(d.stage == args.stage for d in incident.schedule()):
        raise IncidentError(
            tr(t("--stage {stage}: this incident owes no such report now", stage=args.stage))
        )
    session.book.log.append(
        [_record(incident.id, "sent", {"stage": args.stage, "at": deadlines.iso(at)})]
    )
    return [
        f"{incident.id}: {args.stage} submitted {deadlines.athens(at)}",
        *_clocks(session, incident.id),
    ]


def cmd_close(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    if incident.closed is not None:
        raise IncidentError(
            tr(
                t(
                    "{id} was closed {athens}",
                    id=incident.id,
                    athens=deadlines.athens(incident.closed),
                )
            )
        )
    at = _time(args.at, session.now, "--at")
    if at < incident.aware:
        raise IncidentError(tr(t("--at {at}: before the incident became known", at=args.at)))
    data = {
        "at": deadlines.iso(at),
        "root_cause": check_text(args.root_cause, "--root-cause", required=True),
        "mitigation": check_text(args.mitigation, "--mitigation", required=True),
    }
    return _commit(session, [_record(incident.id, "closed", data)], incident.id, "final")


def cmd_draft(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    if not any(d.stage == args.stage for d in incident.schedule()):
        raise IncidentError(
            tr(
                t(
                    "--stage {stage}: not owed by {id} now (a progress report is owed only "
                    "while the incident is open a month on)",
                    stage=args.stage,
                    id=incident.id,
                )
            )
        )
    return _commit(session, [], incident.id, args.stage)


def _commit(session: Session, records: list[dict[str, Any]], name: str, stage: str) -> list[str]:
    """The records and the stage's drafts, made from the incident as the records leave it,
    written to the log in one append."""
    from kastro.nis2.incidents import replay

    known = session.book.log.records()
    provisional = [{**r, "logged": session.now.timestamp()} for r in records]
    incident = replay([*known, *provisional])[name]
    draft_records, paths = session.draft(incident, stage)
    session.book.log.append(records + draft_records, session.now.timestamp())
    lines = [f"{name}: {deadlines.STAGE_NAMES[stage][0]} / {deadlines.STAGE_NAMES[stage][1]}"]
    lines += [f"  {path}" for path in paths]
    return lines + _clocks(session, name)


def _clocks(session: Session, name: str) -> list[str]:
    incident = session.book.get(name)
    lines = []
    for due in incident.schedule():
        left = due.at - session.now
        state = "υποβλήθηκε / submitted" if due.stage in incident.sent else f"{_left(left)}"
        el, en = deadlines.STAGE_NAMES[due.stage]
        lines.append(f"  {el} / {en}: {deadlines.athens(due.at)} ({state})")
    return lines


def _left(left: dt.timedelta) -> str:
    seconds = int(left.total_seconds())
    if seconds < 0:
        return f"ΕΚΠΡΟΘΕΣΜΟ / OVERDUE by {-seconds // 3600} h {-seconds % 3600 // 60} min"
    return f"σε / in {seconds // 3600} h {seconds % 3600 // 60} min"


def cmd_attach(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    path: Path = args.file
    if not path.is_file():
        raise IncidentError(tr(t("{path}: not a file", path=path)))
    if path.stat().st_size > ARTEFACT_MAX:
        raise IncidentError(
            tr(
                t(
                    "{path}: larger than {mib} MiB; attach an extract",
                    path=path,
                    mib=ARTEFACT_MAX >> 20,
                )
            )
        )
    digest = session.book.log.store_artefact(path)
    name = check_text(path.name, "file name", 200, required=True)
    session.book.log.append(
        [
            _record(
                incident.id,
                "artefact",
                {
                    "name": name,
                    "kind": args.kind,
                    "sha256": digest,
                    "bytes": path.stat().st_size,
                },
            )
        ]
    )
    return [f"{incident.id}: {name} sha256:{digest}"]


def cmd_show(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    lines = [
        f"{incident.id}: {incident.title}",
        f"  έγινε γνωστό / became aware: {deadlines.athens(incident.aware)}",
    ]
    lines += _clocks(session, incident.id)
    lines += [
        f"  alert {a['fingerprint']} {a['labels'].get('alertname', '')}: {a['summary_en']}"
        for a in incident.alerts
    ]
    lines += [
        f"  artefact {a['kind']} {a['name']} sha256:{a['sha256']}" for a in incident.artefacts
    ]
    return lines


def cmd_list(session: Session, _args: argparse.Namespace) -> list[str]:
    lines = []
    for name, incident in sorted(session.book.incidents().items()):
        owed = incident.outstanding()
        state = "κλειστό / closed" if incident.closed and not owed else "ανοιχτό / open"
        next_due = (
            f"; next: {owed[0].stage} {deadlines.athens(owed[0].at)} "
            f"({_left(owed[0].at - session.now)})"
            if owed
            else ""
        )
        lines.append(f"{name} [{state}] {incident.title}{next_due}")
    return lines or ["κανένα συμβάν / no incidents"]


def cmd_export(session: Session, args: argparse.Namespace) -> list[str]:
    incident = session.book.get(args.id)
    data = bundle(session.book.log, incident.id)
    _write_private(args.output, data)
    return [f"{args.output}: {len(data)} bytes"]


def cmd_verify(session: Session, _args: argparse.Namespace) -> list[str]:
    records = session.book.log.records()
    digests = {digest for r in records for digest in referenced(r)}
    for digest in sorted(digests):
        session.book.log.artefact(digest)
    return [
        tr(
            t(
                "{path}: {records} records, chain intact; {artefacts} artefacts match "
                "their SHA-256",
                path=session.book.log.path,
                records=len(records),
                artefacts=len(digests),
            )
        )
    ]


def cmd_publish(session: Session, args: argparse.Namespace) -> list[str]:
    """nis2.prom to every monitoring host's textfile directory (root's, 0644): their
    node_exporter serves it, the kastro-nis2 rules alert before each deadline."""
    from kastro.endpoint.state import METRICS_DIR
    from kastro.respond import execute, gateways

    try:
        hosts = gateways.monitoring_hosts(args.inventory)
    except gateways.GatewayError as error:
        raise PublishError(str(error)) from error
    target = f"{METRICS_DIR}/{PUBLISHED}"
    results = execute.put(hosts, metrics.text(session.book).encode(), target)
    failed = {name: r.error for name, r in results.items() if not r.ok}
    if failed:
        raise PublishError(
            "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
            + ": οι προθεσμίες μένουν εδώ· ξανατρέξτε 'kastro incident publish' όταν απαντήσει / "
            "the deadlines are kept here; run 'kastro incident publish' again when the host "
            "answers (is the node_exporter role applied there?)"
        )
    return [f"  {name}:{target} ενημερώθηκε / published" for name in sorted(results)]


class PublishError(Exception):
    """Written here, not published: the monitoring hosts lack the new deadlines."""


PUBLISHED = "kastro_nis2.prom"

COMMANDS = {
    "open": cmd_open,
    "update": cmd_update,
    "sent": cmd_sent,
    "close": cmd_close,
    "draft": cmd_draft,
    "attach": cmd_attach,
    "show": cmd_show,
    "list": cmd_list,
    "export": cmd_export,
    "verify": cmd_verify,
    "publish": cmd_publish,
}


def run(args: argparse.Namespace) -> int:
    now = dt.datetime.now(deadlines.UTC).replace(microsecond=0)
    try:
        session = Session(args, now)
        lines = COMMANDS[args.action](session, args)
        if args.action not in ("show", "list", "export", "verify", "publish"):
            metrics.write(session.book, session.directory)
    except (IncidentError, alerts.AlertError, LogError, OSError, PublishError) as error:
        print(f"kastro incident {args.action}: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if getattr(args, "publish", False):
        try:
            print("\n".join(cmd_publish(session, args)))
        except PublishError as error:
            print(f"kastro incident {args.action}: γράφτηκε, δεν δημοσιεύτηκε / written, "
                  f"not published: {error}", file=sys.stderr)  # fmt: skip
            return 2
    if args.action in ("open", "update", "close"):
        print(
            "  (Kastro δεν στέλνει τίποτα: ελέγξτε, υπογράψτε, στείλτε / "
            "Kastro sends nothing: review, sign, send)"
        )
    return 0
