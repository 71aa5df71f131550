"""What the backup roles write, compiled on the controller from the model and the plan.

A client (a host with datasets in kastro_backup) gets /etc/kastro/backup.json: each dataset's
paths and databases, its repository on the server (ssh://kastro-backup@ADDRESS:PORT/ROOT/
HOST/DATASET) and where its passphrase is. The repository server gets
/etc/kastro/backup-server.json (each repository's retention and passphrase file) and an
authorized_keys line per client host that forces `borg serve --append-only` below that host's
own directory, from that host's planned addresses only.

Every value that reaches a file here was checked by the model (names, absolute paths,
database names, calendar times); this module checks again what it splices into a command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kastro.inventory.model import (
    BACKUP_PATH_RE,
    CALENDAR_RE,
    CONTROLLER_DATASET,
    CONTROLLER_HOST,
    DATABASE_RE,
    NAME_RE,
)
from kastro.inventory.plan import BACKUP_SSH_PORT, host_addresses

USER = "kastro-backup"
CLIENT_DIR = "/etc/kastro/backup"  # the client's key, known_hosts and passphrases
SERVER_DIR = "/etc/kastro/backup-server"  # the server's passphrases (pruning needs them)
STATE_DIR = "/var/lib/kastro-backup"
SERVER_STATE_DIR = "/var/lib/kastro-backup-server"
METRICS_DIR = "/var/lib/prometheus/node-exporter"
PUBLIC_KEY = re.compile(r"ssh-ed25519 [A-Za-z0-9+/]{68}")


class BackupModelError(ValueError):
    """The model's backup section cannot be compiled (validation should have said so)."""


def _section(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    return variables.get("kastro_backup") or {}


def _planned(variables: Mapping[str, Any], host: str) -> Mapping[str, Any]:
    return ((variables.get("kastro_plan") or {}).get("hosts") or {}).get(host) or {}


def _checked(pattern: re.Pattern[str], value: Any, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BackupModelError(f"kastro_backup: {what} {value!r} is not valid; run kastro validate")
    return value


def _root(section: Mapping[str, Any]) -> str:
    return _checked(BACKUP_PATH_RE, section.get("path") or "/srv/kastro-backup", "path")


def server_address(variables: Mapping[str, Any]) -> str:
    """The repository server's planned address (IPv4; its backup listener binds there)."""
    server = _checked(NAME_RE, _section(variables).get("server"), "server")
    address = _planned(variables, server).get("ipv4")
    if not address:
        raise BackupModelError(f"kastro_backup.server {server} has no planned address")
    return str(address)


def client_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """This host's datasets and the configuration kastro-backup reads (empty: not a client)."""
    section = _section(variables)
    mine = {
        _checked(NAME_RE, name, "dataset"): entry
        for name, entry in sorted((section.get("datasets") or {}).items())
        if entry.get("host") == host
    }
    if not mine:
        return {"enabled": False, "datasets": [], "databases": False}
    root, address = _root(section), server_address(variables)
    datasets = {}
    for name, entry in mine.items():
        datasets[name] = {
            "paths": [_checked(BACKUP_PATH_RE, p, "path") for p in entry.get("paths") or []],
            "postgresql": [
                _checked(DATABASE_RE, d, "database") for d in entry.get("postgresql") or []
            ],
            "rpo_seconds": int(entry.get("rpo_hours") or 26) * 3600,
            "repository": f"ssh://{USER}@{address}:{BACKUP_SSH_PORT}{root}/{host}/{name}",
            "passphrase_file": f"{CLIENT_DIR}/{name}.pass",
        }
    return {
        "enabled": True,
        "datasets": sorted(datasets),
        "databases": any(d["postgresql"] for d in datasets.values()),
        "server": {"address": address, "port": BACKUP_SSH_PORT},
        "schedule": _checked(CALENDAR_RE, section.get("schedule") or "*-*-* 01:30:00", "schedule"),
        "drill": _checked(CALENDAR_RE, section.get("drill") or "Sun *-*-* 05:00:00", "drill"),
        "config": {
            "state_dir": STATE_DIR,
            "metrics": f"{METRICS_DIR}/kastro_backup.prom",
            "ssh_key": f"{CLIENT_DIR}/id_ed25519",
            "known_hosts": f"{CLIENT_DIR}/known_hosts",
            "datasets": datasets,
        },
    }


def clients(variables: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each client host and its datasets; the controller as kastro-controller when its state
    is backed up (kastro_backup.controller)."""
    section = _section(variables)
    found: dict[str, list[str]] = {}
    for name, entry in sorted((section.get("datasets") or {}).items()):
        host = _checked(NAME_RE, entry.get("host"), "host")
        found.setdefault(host, []).append(_checked(NAME_RE, name, "dataset"))
    if section.get("controller") is not None:
        found[CONTROLLER_HOST] = [CONTROLLER_DATASET]
    return found


def _client_addresses(variables: Mapping[str, Any], client: str) -> list[str]:
    """Where a client's key may connect from: its planned addresses; for the controller, the
    server's own (the controller relays through its SSH connection to the server, as Ansible
    reaches it, so the listener sees a local connection)."""
    plan = variables.get("kastro_plan") or {}
    if client == CONTROLLER_HOST:
        return host_addresses(plan, str(_section(variables).get("server")))
    return host_addresses(plan, client)


def server_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The repository server's listener, repositories and configuration (empty elsewhere)."""
    section = _section(variables)
    if section.get("server") != host:
        return {"enabled": False}
    root = _root(section)
    keep = {k: int(v) for k, v in (section.get("retention") or {}).items() if int(v) > 0}
    repositories = {
        f"{client}/{dataset}": {
            "passphrase_file": f"{SERVER_DIR}/{dataset}.pass",
            "retention": keep,
        }
        for client, names in clients(variables).items()
        for dataset in names
    }
    return {
        "enabled": True,
        "root": root,
        "address": server_address(variables),
        "port": BACKUP_SSH_PORT,
        "clients": {
            client: {"addresses": _client_addresses(variables, client), "datasets": names}
            for client, names in clients(variables).items()
        },
        "datasets": sorted(d for names in clients(variables).values() for d in names),
        "maintenance": _checked(
            CALENDAR_RE, section.get("maintenance") or "*-*-* 07:00:00", "maintenance"
        ),
        "config": {
            "root": root,
            "state_dir": SERVER_STATE_DIR,
            "metrics": f"{METRICS_DIR}/kastro_backup_server.prom",
            "check_days": int(section.get("check_days") or 7),
            "repositories": repositories,
        },
    }


def _public_key(path: Path) -> str:
    try:
        return " ".join(path.read_text(encoding="utf-8").split()[:2])
    except OSError as exc:
        raise BackupModelError(
            f"{path}: {exc.strerror}; the backup_credentials role makes it"
        ) from exc


def authorized_keys(server: Mapping[str, Any], secrets_dir: str) -> str:
    """One line per client: its key (from the controller's secrets directory) may run
    `borg serve --append-only` below its own directory and nothing else (restrict: no
    shell, no forwarding, no pty), from its planned addresses only."""
    lines = ["# Kastro backups: written by the backup_server role. Do not edit.\n"]
    for client, entry in sorted((server.get("clients") or {}).items()):
        key = _public_key(
            Path(secrets_dir) / "clients" / f"{_checked(NAME_RE, client, 'host')}.pub"
        )
        if not PUBLIC_KEY.fullmatch(key):
            raise BackupModelError(f"the backup key of {client} is not an Ed25519 public key")
        addresses = [a for a in entry["addresses"] if re.fullmatch(r"[0-9a-f.:]+", a)]
        directory = f"{server['root']}/{_checked(NAME_RE, client, 'host')}"
        command = f"borg serve --append-only --restrict-to-path {directory} --umask 077"
        lines.append(
            f'restrict,from="{",".join(addresses)}",command="{command}" {key} {USER}@{client}\n'
        )
    return "".join(lines)


def known_hosts(client: Mapping[str, Any], secrets_dir: str) -> str:
    """The server's backup host key (from the controller's secrets directory), pinned for
    its address and port."""
    key = _public_key(Path(secrets_dir) / "host_key.pub")
    if not PUBLIC_KEY.fullmatch(key):
        raise BackupModelError("the backup server's host key is not an Ed25519 public key")
    server = client["server"]
    return f"[{server['address']}]:{int(server['port'])} {key}\n"


def credentials(variables: Mapping[str, Any]) -> dict[str, Any]:
    """What `kastro backup-credentials` makes secrets for: the server, the client hosts, the
    datasets."""
    found = clients(variables)
    return {
        "server": _checked(NAME_RE, _section(variables).get("server"), "server"),
        "clients": sorted(found),
        "datasets": sorted(d for names in found.values() for d in names),
    }


def passphrase_files(
    datasets: list[str], secrets_dir: str, directory: str, owner: str
) -> list[dict[str, Any]]:
    """kastro_files entries: each dataset's passphrase from the controller's secrets directory
    into DIRECTORY/NAME.pass on the host, 0600, owned by `owner` (for no_log tasks only)."""
    entries = []
    for name in datasets:
        source = Path(secrets_dir) / "datasets" / f"{_checked(NAME_RE, name, 'dataset')}.pass"
        try:
            secret = source.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BackupModelError(
                f"{source}: {exc.strerror}; the backup_credentials role makes it"
            ) from exc
        entries.append(
            {"dest": f"{directory}/{name}.pass", "mode": "0600", "owner": owner, "group": owner,
             "content": secret + "\n"}
        )  # fmt: skip
    return entries


def controller_config(
    variables: Mapping[str, Any], secrets_dir: str, state_dir: str, paths: list[str]
) -> dict[str, Any]:
    """kastro-backup's configuration for the controller's own state (`kastro backup
    controller`): the dataset `controller` and its repository on the server."""
    section = _section(variables)
    controller = section.get("controller")
    if controller is None:
        raise BackupModelError(
            "kastro_backup.controller is not set: add 'controller: {}' to back the controller up"
        )
    extra = [_checked(BACKUP_PATH_RE, p, "controller path") for p in controller.get("paths") or []]
    root, address = _root(section), server_address(variables)
    location = (
        f"ssh://{USER}@{address}:{BACKUP_SSH_PORT}{root}/{CONTROLLER_HOST}/{CONTROLLER_DATASET}"
    )
    return {
        "state_dir": state_dir,
        "metrics": f"{state_dir}/kastro_backup.prom",
        "ssh_key": f"{secrets_dir}/clients/{CONTROLLER_HOST}",
        "known_hosts": f"{state_dir}/known_hosts",
        "datasets": {
            CONTROLLER_DATASET: {
                "paths": [*paths, *extra],
                "repository": location,
                "passphrase_file": f"{secrets_dir}/datasets/{CONTROLLER_DATASET}.pass",
                "rpo_seconds": int(controller.get("rpo_hours") or 26) * 3600,
            }
        },
    }
