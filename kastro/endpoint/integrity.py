"""AIDE for one host: Kastro's own configuration (not aide-common's cron job and include
tree), compiled on the controller.

What is watched: the boot files, /etc, the programs and libraries (/usr/bin, /usr/sbin,
/usr/lib, /usr/local) and Kastro's host programs, with the attributes that reveal tampering
(permissions, inode, links, owner, group, size, SHA-256, ACLs, extended attributes). What
changes by design is left out: /etc/mtab, adjtime, editors' backups, the dynamic linker's
cache (rebuilt by every package install; the libraries themselves are watched).

`endpoint_aide_paths` replaces the watched list per host or group (absolute paths, strictly
checked: each becomes a rule line AIDE reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.endpoint.audit import path_list

# Debian's paths (the scanners look there); Kastro writes the file, aide-common is not used.
CONFIG = "/etc/aide/aide.conf"
DATABASE = "/var/lib/aide/aide.db"
NEW_DATABASE = "/var/lib/aide/aide.db.new"
PATHS = ("/boot", "/etc", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/local")
EXCLUDED = (
    # Compiled by augenrules from /etc/audit/rules.d (watched): Kastro's reload rewrites them.
    r"/etc/audit/audit\.rules$",
    r"/etc/audit/audit\.rules\.prev$",
    r"/etc/mtab$",
    r"/etc/adjtime$",
    r"/etc/ld\.so\.cache$",
    r"/etc/.*~$",
    r"/etc/\.#.*",
)
ATTRIBUTES = "p+i+n+u+g+s+sha256+acl+xattrs"


def watched(variables: Mapping[str, Any]) -> list[str]:
    paths = variables.get("endpoint_aide_paths", list(PATHS))
    return path_list("endpoint_aide_paths", paths, "[/etc, /usr/bin]")


def config(variables: Mapping[str, Any]) -> str:
    """/etc/aide/aide.conf (checked with `aide --config-check` before it is installed)."""
    lines = [
        "# Kastro endpoint: AIDE (generated; kastro.endpoint.integrity). kastro-aide runs it.",
        f"database_in=file:{DATABASE}",
        f"database_out=file:{NEW_DATABASE}",
        "gzip_dbout=yes",
        "report_url=stdout",
        f"Kastro = {ATTRIBUTES}",
    ]
    lines += [f"!{pattern}" for pattern in EXCLUDED]
    lines += [f"{path} Kastro" for path in watched(variables)]
    return "\n".join(lines) + "\n"


def integrity_state(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "config": config(variables),
        "config_path": CONFIG,
        "database": DATABASE,
        "directory": DATABASE.rsplit("/", 1)[0],
    }
