"""Where a municipality's secrets live on the controller.

One directory per municipality, named by its DNS domain: an ASCII identifier that is unique
and stable, unlike the display name (every Greek name would reduce to '-' under an ASCII
filter, and two municipalities would then share one CA, keys and PSKs). A marker file records
which municipality a directory belongs to, so a second municipality whose settings point at
the same directory is refused instead of revoking the first one's certificates.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kastro.inventory.model import DOMAIN_RE

MARKER = ".kastro-municipality"
PARTS = ("telework", "links")


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


def claim(directory: str, municipality: Mapping[str, Any] | None) -> str:
    """Make sure ``directory``'s parent belongs to this municipality (creating the marker on
    first use, 0700); returns the domain. Refuses a directory another municipality owns."""
    domain = municipality_id(municipality)
    root = Path(directory).parent
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    marker = root / MARKER
    if marker.exists():
        owner = marker.read_text(encoding="utf-8").strip()
        if owner != domain:
            raise SecretsDirError(
                f"{root} holds the secrets of {owner}, not of {domain}: give this "
                "municipality its own directory (telework_secrets_dir / links_secrets_dir)"
            )
    else:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(domain + "\n")
    return domain


_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+-]+")


def safe_path(path: str) -> bool:
    """Whether a controller path is safe to hand to a shell task (no quoting needed)."""
    return bool(_SAFE_PATH.fullmatch(path)) and ".." not in Path(path).parts
