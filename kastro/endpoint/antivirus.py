"""ClamAV for one host: where signatures come from, what is scanned and when.

No internet is assumed, and none is used: Debian's `clamav-freshclam` service (which fetches
from database.clamav.net) is masked before the package is installed and stays masked.
Signatures come from sources the municipality controls, any of:

- `endpoint_clamav_mirror`: an internal mirror of ClamAV's official databases (for example
  made with Debian's `clamav-cvdupdate`), given to freshclam as `PrivateMirror`;
- `endpoint_clamav_custom_urls`: further databases (`.ndb`, `.hdb`, `.ldb`, ...) by
  `http(s)://` or `file://` URL, given to freshclam as `DatabaseCustomURL`;
- `endpoint_clamav_signature_files`: signature files on the controller, copied by the role.

Kastro's own freshclam (`kastro-freshclam.timer`, its configuration in /etc/kastro) runs only
when a mirror or a URL is named. Every value here goes into a configuration line, so each is
strictly checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from kastro.endpoint.audit import path_list
from kastro.endpoint.profile import EndpointConfigError

DATABASE_DIR = "/var/lib/clamav"
FRESHCLAM_CONFIG = "/etc/kastro/freshclam.conf"
# A URL with nothing a configuration line or a shell could read differently.
MIRROR = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?")
DATABASE_KINDS = r"\.(?:ndb|hdb|hsb|mdb|msb|ldb|cdb|ign2|fp|sfp|cvd|cld|cud)"
CUSTOM = re.compile(
    r"(?:https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|file://)/[A-Za-z0-9._~/-]*" + DATABASE_KINDS
)
SIGNATURE_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}" + DATABASE_KINDS)
# Where users and programs drop files (scanned, not written to).
PATHS = ("/home", "/srv", "/tmp", "/var/tmp", "/dev/shm")  # noqa: S108
CHECKS_PER_DAY = range(1, 25)


def _list(variables: Mapping[str, Any], name: str, example: str) -> list[Any]:
    value = variables.get(name) or []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise EndpointConfigError(f"{name}: write a list, e.g. [{example}]")
    return list(value)


def mirror(variables: Mapping[str, Any]) -> str:
    value = variables.get("endpoint_clamav_mirror") or ""
    if value and (not isinstance(value, str) or not MIRROR.fullmatch(value)):
        raise EndpointConfigError(
            f"endpoint_clamav_mirror: {value!r} is not an http(s) URL of the internal mirror, "
            "e.g. http://mirror.dimos.local/clamav (letters, digits and . - _ ~ / only)"
        )
    return value


def custom_urls(variables: Mapping[str, Any]) -> list[str]:
    urls = _list(variables, "endpoint_clamav_custom_urls", "file:///srv/signatures/municipal.ndb")
    for url in urls:
        if not isinstance(url, str) or not CUSTOM.fullmatch(url) or "/../" in url:
            raise EndpointConfigError(
                f"endpoint_clamav_custom_urls: {url!r} is not an http(s):// or file:// URL of a "
                "ClamAV database (.ndb, .hdb, .ldb, ...; letters, digits and . - _ ~ / only)"
            )
    return sorted(set(urls))


def signature_files(variables: Mapping[str, Any]) -> list[dict[str, str]]:
    """Controller files to copy: {src, name}. The name is checked; the file is ClamAV's to read."""
    found = []
    for src in _list(variables, "endpoint_clamav_signature_files", "files/clamav/municipal.ndb"):
        name = src.rsplit("/", 1)[-1] if isinstance(src, str) else ""
        if not SIGNATURE_FILE.fullmatch(name):
            raise EndpointConfigError(
                f"endpoint_clamav_signature_files: {src!r} is not a ClamAV database file "
                "(a name like municipal.ndb, main.cvd, daily.cld)"
            )
        found.append({"src": src, "name": name})
    names = [f["name"] for f in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EndpointConfigError(
            f"endpoint_clamav_signature_files: two files named {', '.join(twice)}; "
            "ClamAV's directory holds one of each name"
        )
    return found


def scan_paths(variables: Mapping[str, Any]) -> list[str]:
    paths = variables.get("endpoint_clamav_paths", list(PATHS))
    return path_list("endpoint_clamav_paths", paths, "[/srv, /home]", whole_disk=False)


def update_minutes(variables: Mapping[str, Any]) -> int:
    """Minutes between two runs of kastro-freshclam (from checks per day)."""
    checks = variables.get("endpoint_clamav_checks_per_day", 12)
    if isinstance(checks, bool) or not isinstance(checks, int) or checks not in CHECKS_PER_DAY:
        raise EndpointConfigError(
            f"endpoint_clamav_checks_per_day: {checks!r} is not a whole number from 1 to 24"
        )
    return 24 * 60 // checks


def freshclam_config(variables: Mapping[str, Any]) -> str:
    """Kastro's freshclam.conf: never database.clamav.net, only the municipality's sources
    (kastro-freshclam also runs freshclam with --no-dns: no TXT lookup of clamav.net)."""
    lines = [
        "# Kastro endpoint: freshclam (generated; kastro.endpoint.antivirus).",
        "# Only the municipality's own sources; database.clamav.net is never asked.",
        f"DatabaseDirectory {DATABASE_DIR}",
        "DatabaseOwner clamav",
        "UpdateLogFile /var/log/clamav/kastro-freshclam.log",
        "LogTime yes",
        "Foreground yes",
        "ScriptedUpdates no",
    ]
    if mirror(variables):
        lines.append(f"PrivateMirror {mirror(variables)}")
    else:  # no mirror: the official databases are not asked for at all (freshclam still
        # wants a mirror line; with every official database excluded it is never contacted)
        lines += ["DatabaseMirror 127.0.0.1"]
        lines += [f"ExcludeDatabase {name}" for name in ("main", "daily", "bytecode")]
    lines += [f"DatabaseCustomURL {url}" for url in custom_urls(variables)]
    return "\n".join(lines) + "\n"


def antivirus_state(variables: Mapping[str, Any]) -> dict[str, Any]:
    online = bool(mirror(variables) or custom_urls(variables))
    return {
        "database_dir": DATABASE_DIR,
        "freshclam_config": freshclam_config(variables),
        "freshclam_config_path": FRESHCLAM_CONFIG,
        "freshclam": online,
        "update_minutes": update_minutes(variables),
        "signature_files": signature_files(variables),
        "paths": scan_paths(variables),
    }
