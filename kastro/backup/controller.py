"""`kastro backup controller`: the controller's own state into its repository on the backup
server, with the host program's code (kastro.host.backup), run here.

What is backed up: the inventory (model and plan), the municipality's secrets directory (CA,
keys, passphrases: in a repository encrypted with a passphrase that is escrowed on paper), and
the incident and response logs (NIS2 evidence). The controller is not a host the plan
addresses, so it reaches the listener through its SSH connection to the server, as Ansible
does (ProxyCommand: `nc ADDRESS 2222` on the server); the server's authorized_keys accepts the
controller's key from the server's own addresses only, forced to `borg serve --append-only`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kastro.backup.state import BackupModelError, controller_config
from kastro.controller.model_vars import model_directory, model_variables
from kastro.controller.secrets import SecretsDirError, secrets_dir
from kastro.host import backup as host
from kastro.i18n import t, tr
from kastro.inventory.model import CONTROLLER_DATASET
from kastro.inventory.plan import BACKUP_SSH_PORT

HOME = Path(os.environ.get("HOME") or "/root")


class ControllerBackupError(ValueError):
    """The controller's backup cannot run; the message says what to fix."""


def _model(inventories: Sequence[str]) -> tuple[Path, dict[str, Any]]:
    for inventory in inventories:
        directory = model_directory(inventory)
        if directory is not None:
            variables = model_variables(directory)
            if variables.get("kastro_backup"):
                return directory, variables
    raise ControllerBackupError(tr(t(
        "no inventory among {names} has kastro_backup; describe the backups first "
        "(docs/inventory.md)", names=", ".join(inventories))))  # fmt: skip


def state_paths(inventory: Path, domain: str, secrets: Path) -> list[str]:
    """What the controller holds for this municipality, the directories that exist."""
    wanted = [
        inventory,
        secrets.parent if secrets.name == "backup" else secrets,
        HOME / ".kastro" / "incidents" / domain,
        HOME / ".kastro" / "respond" / domain,
    ]
    return [str(p.resolve()) for p in wanted if p.is_dir()]


def relay(server: Any, address: str) -> list[str]:
    """ssh to the server as Ansible does, running `nc ADDRESS PORT` there."""
    words = ["ssh", "-o", "BatchMode=yes", "-p", str(int(server.port))]
    if server.key:
        words += ["-i", str(server.key), "-o", "IdentitiesOnly=yes"]
    if server.known_hosts:
        words += ["-o", f"UserKnownHostsFile={server.known_hosts}"]
    words += ["-o", f"StrictHostKeyChecking={server.strict_host_keys}"]
    return [*words, f"{server.user}@{server.address}", "nc", address, str(BACKUP_SSH_PORT)]


def run_controller(inventories: Sequence[str], secrets_override: str | None, drill: bool) -> int:
    from kastro.respond import gateways

    inventory, variables = _model(inventories)
    municipality = variables.get("kastro_municipality") or {}
    try:
        secrets = Path(secrets_override or secrets_dir(municipality, "backup")).resolve()
    except SecretsDirError as exc:
        raise ControllerBackupError(str(exc)) from exc
    domain = str(municipality.get("domain"))
    state = HOME / ".kastro" / "backup" / domain
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    servers = gateways.group_hosts(inventories, "backup_servers")
    if not servers:
        raise ControllerBackupError(tr(t(
            "no host in group backup_servers: run 'kastro apply' and give the inventory "
            "Ansible uses with -i")))  # fmt: skip
    try:
        raw = controller_config(
            variables, str(secrets), str(state), state_paths(inventory, domain, secrets)
        )
        host_key = (secrets / "host_key.pub").read_text(encoding="utf-8").split()[:2]
    except (BackupModelError, OSError) as exc:
        raise ControllerBackupError(str(exc)) from exc
    address = raw["datasets"][CONTROLLER_DATASET]["repository"].split("@", 1)[1].split(":", 1)[0]
    (state / "known_hosts").write_text(f"[{address}]:{BACKUP_SSH_PORT} {' '.join(host_key)}\n")
    raw["proxy_command"] = relay(servers[0], address)
    config = host.config_from(raw)
    dataset = config.datasets[CONTROLLER_DATASET]
    kind = "drill" if drill else "backup"
    with host.locked(config):
        result = (host.drill_one if drill else host.create_one)(config, dataset)
        host.record(config, CONTROLLER_DATASET, kind, result)
        host.publish(config)
    host.report(kind if drill else "create", CONTROLLER_DATASET, result)
    return 0 if result["ok"] else 1
