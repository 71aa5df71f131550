"""Where a municipality's secrets live on the controller.

One directory per municipality, named by its DNS domain: an ASCII identifier that is unique
and stable, unlike the display name (every Greek name would reduce to '-' under an ASCII
filter, and two municipalities would then share one CA, keys and PSKs). A marker file records
which municipality a directory belongs to, so a second municipality whose settings point at
the same directory is refused instead of revoking the first one's certificates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kastro.inventory.model import DOMAIN_RE

MARKER = ".kastro-municipality"
PARTS = ("telework", "links", "monitoring", "backup")


class SecretsDirError(ValueError):
    """The secrets directory cannot be derived or belongs to someone else."""


def municipality_id(municipality: Mapping[str, Any] | None) -> str:
    """The domain, checked: the one identifier a secrets path is built from."""
    domain = str((municipality or {}).get("domain") or "")
    if not DOMAIN_RE.fullmatch(domain):
        raise SecretsDirError(
            f"kastro_municipality.domain is {domain!r}: a secrets directory needs the "
            "municipality's DNS domain (lower-case ASCII, e.g. dimos-kastrou.gr)"
        )
    return domain


def secrets_dir(municipality: Mapping[str, Any] | None, part: str, home: str = "") -> str:
    """~/.kastro/secrets/DOMAIN/PART on the controller."""
    if part not in PARTS:
        raise SecretsDirError(f"unknown secrets part {part!r}; use one of {', '.join(PARTS)}")
    base = Path(home or os.environ.get("HOME") or "/root") / ".kastro" / "secrets"
    return str(base / municipality_id(municipality) / part)


def write_secret(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a secret file (0600 unless told), whole or not at all: a staged file, synced,
    renamed into place."""
    staged = path.with_name(f".{path.name}.new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    staged.replace(path)
