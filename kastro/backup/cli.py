"""`kastro backup status | drill | restore` for admins, and `kastro backup-credentials` for the
roles: the hosts are the ones Ansible reaches (the inventory's backup_clients and
backup_servers groups), each runs its own kastro-backup and answers."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from kastro.i18n import _, t, tr
from kastro.inventory.model import CONTROLLER_DATASET, CONTROLLER_HOST

NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
ARCHIVE = re.compile(r"[a-z][a-z0-9-]{0,40}-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
TARGET = re.compile(r"(/[A-Za-z0-9._-]+)+")


class BackupCommandError(ValueError):
    """A bad argument or an inventory without backups; nothing was run."""


def add_parser(commands: Any) -> None:
    made = commands.add_parser(
        "backup-credentials",
        help=_("make the backups' passphrases and SSH keys (kept, 0600; run by the roles)"),
    )
    made.add_argument("directory", help=_("the municipality's backup secrets directory"))
    made.add_argument("--server", required=True, help=_("the repository server's name"))
    made.add_argument("--client", action="append", default=[], help=_("a client host (repeat)"))
    made.add_argument("--dataset", action="append", default=[], help=_("a dataset (repeat)"))
    made.set_defaults(handler=_cmd_credentials)

    backup = commands.add_parser(
        "backup", help=_("backups: status of every dataset, a restore drill, a restore")
    )
    sub = backup.add_subparsers(dest="backup_command", metavar="BACKUP_COMMAND", required=True)
    status = sub.add_parser(
        "status", help=_("each dataset's last backup and drill, each repository")
    )
    drill = sub.add_parser(
        "drill", help=_("restore the latest archives into throwaway copies now and compare")
    )
    drill.add_argument("datasets", nargs="*", metavar="DATASET", help=_("default: all"))
    restore = sub.add_parser(
        "restore", help=_("put an archive back on its host, into a new directory")
    )
    restore.add_argument("dataset", metavar="DATASET")
    restore.add_argument(
        "--to",
        required=True,
        metavar="PATH",
        help=_("a new or empty directory on the dataset's host"),
    )
    restore.add_argument("--archive", default=None, help=_("default: the latest"))
    listed = sub.add_parser("list", help=_("a dataset's archives, oldest first"))
    listed.add_argument("dataset", metavar="DATASET")
    mine = sub.add_parser(
        "controller",
        help=_("back up this controller's own state now (the inventory, its secrets, incident "
               "and response logs), or --drill"),
    )  # fmt: skip
    mine.add_argument(
        "--drill",
        action="store_true",
        help=_("restore the latest into a throwaway copy and compare"),
    )
    mine.add_argument(
        "--secrets-dir",
        default=None,
        help=_("the backup secrets (default: ~/.kastro/secrets/DOMAIN/backup)"),
    )
    for parser in (status, drill, restore, listed, mine):
        parser.add_argument(
            "-i",
            "--inventory",
            action="append",
            required=True,
            help=_("the inventory Ansible uses (repeat for the lab's overlay)"),
        )
        parser.set_defaults(handler=_cmd_backup)
    status.add_argument("--json", action="store_true", help=_("the hosts' answers as JSON"))


def _cmd_credentials(args: argparse.Namespace) -> int:
    from kastro.backup.credentials import BackupCredentialsError, ensure_json

    try:
        print(ensure_json(Path(args.directory), args.server, args.client, args.dataset))
    except BackupCredentialsError as exc:
        print(f"kastro backup-credentials: {tr(t('{exc}; nothing was written', exc=exc))}",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


def _datasets(inventories: list[str]) -> dict[str, str]:
    """Each dataset of the model and its host (the controller's: kastro-controller)."""
    from kastro.controller.model_vars import model_variables

    found: dict[str, str] = {}
    for inventory in inventories:
        section = model_variables(inventory).get("kastro_backup") or {}
        for name, entry in (section.get("datasets") or {}).items():
            found[str(name)] = str(entry.get("host"))
        if section.get("controller") is not None:
            found[CONTROLLER_DATASET] = CONTROLLER_HOST
    return found


def _controller_status(inventories: list[str]) -> dict[str, Any]:
    """This controller's own backup status (kastro backup controller), if it has one."""
    from kastro.backup.controller import HOME
    from kastro.controller.model_vars import model_variables

    for inventory in inventories:
        domain = (model_variables(inventory).get("kastro_municipality") or {}).get("domain")
        path = HOME / ".kastro" / "backup" / str(domain) / "status.json"
        if domain and path.is_file():
            return dict(json.loads(path.read_text(encoding="utf-8")))
    return {}


def _cmd_backup(args: argparse.Namespace) -> int:
    from kastro.backup.controller import ControllerBackupError

    try:
        return _run(args)
    except (BackupCommandError, ControllerBackupError) as exc:
        print(f"kastro backup: {exc}", file=sys.stderr)
        return 2


PROGRAM = "/usr/local/sbin/kastro-backup"


def _run(args: argparse.Namespace) -> int:
    from kastro.respond import gateways

    if args.backup_command == "controller":
        from kastro.backup.controller import run_controller

        return run_controller(args.inventory, args.secrets_dir, args.drill)
    datasets = _datasets(args.inventory)
    wanted = _wanted(args, datasets)
    hosts = {h.name: h for h in gateways.group_hosts(args.inventory, "backup_clients")}
    if args.backup_command == "status":
        return _status(args, datasets, hosts)
    if args.backup_command == "drill":
        names = wanted or sorted(d for d, h in datasets.items() if h != CONTROLLER_HOST)
        failed = sum(_on(hosts, datasets[name], [PROGRAM, "drill", name]) for name in names)
        return 1 if failed else 0
    if args.backup_command == "list":
        return _on(hosts, datasets[args.dataset], [PROGRAM, "list", args.dataset])
    return _on(hosts, datasets[args.dataset], _restore_argv(args))


def _wanted(args: argparse.Namespace, datasets: dict[str, str]) -> list[str]:
    """The datasets the command names, checked against the model before anything runs."""
    if not datasets:
        raise BackupCommandError(tr(t(
            "the inventory has no kastro_backup datasets; describe them (docs/inventory.md) "
            "and run site.yml")))  # fmt: skip
    one = args.backup_command in ("restore", "list")
    wanted: list[str] = [args.dataset] if one else getattr(args, "datasets", [])
    unknown = [d for d in wanted if d not in datasets]
    if unknown:
        raise BackupCommandError(tr(t(
            "unknown dataset {names}; the datasets are: {known}",
            names=", ".join(unknown), known=", ".join(sorted(datasets)))))  # fmt: skip
    if CONTROLLER_DATASET in wanted:
        raise BackupCommandError(tr(t(
            "the controller's state is backed up and drilled here: kastro backup controller "
            "[--drill] -i INV; restore it with borg (docs/backup.md)")))  # fmt: skip
    return wanted


def _restore_argv(args: argparse.Namespace) -> list[str]:
    target = str(args.to)
    if not TARGET.fullmatch(target) or ".." in target.split("/"):
        said = t("--to {path}: give an absolute path of letters, digits and . _ - /", path=target)
        raise BackupCommandError(tr(said))
    argv = [PROGRAM, "restore", args.dataset, "--to", target]
    if args.archive:
        if not ARCHIVE.fullmatch(args.archive):
            raise BackupCommandError(tr(t(
                "--archive {name}: not an archive name (DATASET-YYYY-MM-DDTHH:MM:SS)",
                name=args.archive)))  # fmt: skip
        argv += ["--archive", args.archive]
    return argv


def _on(hosts: dict[str, Any], host: str, argv: list[str]) -> int:
    """ARGV on one host; what it said printed; 1 when it failed."""
    from kastro.respond import execute

    return _said(host, execute.run_command([hosts[host]], argv)[host])


def _status(args: argparse.Namespace, datasets: dict[str, str], hosts: dict[str, Any]) -> int:
    from kastro.respond import execute, gateways

    servers = gateways.group_hosts(args.inventory, "backup_servers")
    answers = execute.run_command(list(hosts.values()), [PROGRAM, "status"])
    served = execute.run_command(servers, ["/usr/local/sbin/kastro-backup-server", "status"])
    if CONTROLLER_HOST in datasets.values():
        local = json.dumps(_controller_status(args.inventory))
        answers[CONTROLLER_HOST] = execute.Result(True, {"stdout": local, "succeeded": True})
    return _print_status(datasets, answers, served, args.json)


def _said(host: str, result: Any) -> int:
    """Print what the host said; 1 when it failed."""
    out = str(result.data.get("stdout") or "").strip() if result.ok else ""
    print(f"{host}: {out or result.error}")
    return 0 if result.ok and result.data.get("succeeded") else 1


def _age(stamp: float, now: float) -> str:
    if not stamp:
        return tr(t("never"))
    hours = (now - stamp) / 3600
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))
    return tr(t("{when} ({hours:.1f} h ago)", when=when, hours=hours))


def _print_status(
    datasets: dict[str, str], answers: dict[str, Any], served: dict[str, Any], as_json: bool
) -> int:
    status = {h: _json(r) for h, r in answers.items()}
    repositories = {h: _json(r) for h, r in served.items()}
    if as_json:
        print(json.dumps({"clients": status, "servers": repositories}, indent=2, sort_keys=True))
        return 0
    late = _print_datasets(datasets, status)
    late += _print_repositories(repositories)
    unreachable = [h for h, r in {**answers, **served}.items() if not r.ok]
    for host in unreachable:
        print(tr(t("  {host}: not reachable", host=host)))
    return 1 if late or unreachable else 0


def _word(result: dict[str, Any], ok: bool) -> str:
    return "-" if not result else "ok" if ok else tr(t("FAILED"))


def _print_datasets(datasets: dict[str, str], status: dict[str, Any]) -> int:
    """One line per dataset; how many are failing or never drilled."""
    now, late = time.time(), 0
    print(tr(t("dataset / host / last backup / last drill")))
    for name, host in sorted(datasets.items()):
        entry = (status.get(host) or {}).get(name) or {}
        backup, drill = entry.get("backup") or {}, entry.get("drill") or {}
        backed = _age(entry.get("backup_last_success") or 0, now)
        drilled = _age(entry.get("drill_last_success") or 0, now)
        print(
            f"  {name}  {host}  {backed} {_word(backup, bool(backup.get('ok')))}  "
            f"{drilled} {_word(drill, bool(drill.get('ok')))}"
        )
        late += not backup.get("ok") or not drill.get("ok")
    return late


def _print_repositories(repositories: dict[str, Any]) -> int:
    """One line per repository; how many had archives vanish or fail their check."""
    late = 0
    for server, entries in sorted(repositories.items()):
        for repo, entry in sorted((entries or {}).items()):
            if entry.get("note"):
                said = t(
                    "  {server}: {repo}: not maintained yet (the server's first maintenance "
                    "counts its archives)", server=server, repo=repo,
                )  # fmt: skip
                print(tr(said))
                continue
            vanished = len(entry.get("vanished") or [])
            checked = "check_time" in entry
            check = _word(entry if checked else {}, bool(entry.get("check_ok")))
            line = t(
                "  {server}: {repo}: {archives} archives, {vanished} vanished, check {check}",
                server=server, repo=repo, archives=entry.get("archives", 0), vanished=vanished,
                check=check,
            )  # fmt: skip
            print(tr(line))
            late += bool(vanished) or (checked and not entry.get("check_ok"))
    return late


def _json(result: Any) -> dict[str, Any]:
    try:
        data = json.loads(str(result.data.get("stdout") or "{}")) if result.ok else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
