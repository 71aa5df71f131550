"""The backups' secrets, made and kept on the controller (0700 directory, 0600 files).

- `datasets/NAME.pass`: each dataset's borg passphrase. Its repository's key is stored in the
  repository (repokey), encrypted with it: the passphrase alone opens the archives, so it is
  what must be escrowed (docs/backup.md: printed and sealed, with `borg key export --paper`).
- `clients/HOST` and `.pub`: each client host's SSH key for the repository server, whose
  authorized_keys restricts it to `borg serve --append-only` below that host's directory.
- `host_key` and `.pub`: the repository server's own SSH host key for its backup listener,
  so clients pin it (StrictHostKeyChecking) without ever trusting a first connection.

Made once and kept: a second run changes nothing and reports it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kastro.controller.secrets import write_secret

NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class BackupCredentialsError(ValueError):
    """A host or dataset name that cannot name a secret file."""


def _keypair(path: Path, comment: str) -> bool:
    """An Ed25519 key in OpenSSH format at `path` and its public key at PATH.pub."""
    public = path.with_name(path.name + ".pub")
    if path.exists() and public.exists():
        return False
    key = ed25519.Ed25519PrivateKey.generate()
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_bytes = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_secret(path, private_bytes)
    write_secret(public, public_bytes + f" {comment}\n".encode(), 0o644)
    return True


def _checked(kind: str, names: Iterable[str]) -> list[str]:
    found = sorted(set(names))
    for name in found:
        if not NAME.fullmatch(name):
            raise BackupCredentialsError(f"{kind} {name!r} is not a name (a-z, 0-9, '-')")
    return found


def ensure(
    directory: Path, server: str, clients: Iterable[str], datasets: Iterable[str]
) -> dict[str, object]:
    """Make what is missing in `directory`; report what was made (nothing secret)."""
    (server,) = _checked("server", [server])
    clients, datasets = _checked("client", clients), _checked("dataset", datasets)
    made: list[str] = []
    for sub in ("", "clients", "datasets"):
        (directory / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / sub).chmod(0o700)
    if _keypair(directory / "host_key", f"kastro-backup@{server}"):
        made.append("host_key")
    for client in clients:
        if _keypair(directory / "clients" / client, f"kastro-backup@{client}"):
            made.append(f"clients/{client}")
    for dataset in datasets:
        path = directory / "datasets" / f"{dataset}.pass"
        if not path.exists():
            write_secret(path, secrets.token_urlsafe(32).encode() + b"\n")
            made.append(f"datasets/{dataset}.pass")
    return {"changed": bool(made), "made": made}


def ensure_json(
    directory: Path, server: str, clients: Iterable[str], datasets: Iterable[str]
) -> str:
    return json.dumps(ensure(directory, server, clients, datasets))
