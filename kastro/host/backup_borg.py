"""BorgBackup as the backup programs use it: one repository per dataset, every call an
argument list, the passphrase in the child's environment only (never on a command line,
never logged), borg's state in a directory of Kastro's own (BORG_BASE_DIR).

Archives are made and pruned through borgmatic, with a configuration file per repository
written here from Kastro's own (`borgmatic_config`): an admin can run borgmatic with it by hand
(`borgmatic -c FILE list`, `info`, `extract`) and sees what Kastro runs. Reading (list,
extract, check) calls borg directly: the JSON and exit codes Kastro acts on are borg's.

A client reaches its repositories over SSH, where the server's `authorized_keys` runs
`borg serve --append-only --restrict-to-path ...` whatever the client asks: the client can
add archives, never remove data. The server works on the same repositories as local paths.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHIVE = re.compile(r"[a-z][a-z0-9-]{0,40}-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


class BorgError(RuntimeError):
    """A borg command failed; the message is borg's own last lines."""


@dataclass(frozen=True)
class Repository:
    """Where one dataset's archives live and how to open them."""

    location: str  # ssh://user@host:port/path on a client, an absolute path on the server
    passphrase_file: Path
    base_dir: Path  # BORG_BASE_DIR: borg's cache, security and key directories
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    # How ssh reaches the server when not directly (the controller relays through its own SSH
    # connection to the server): an argument list, never a shell line.
    proxy_command: tuple[str, ...] = ()

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "BORG_BASE_DIR": str(self.base_dir),
            "BORG_PASSPHRASE": self.passphrase_file.read_text(encoding="utf-8").strip(),
            # Never wait for an answer: a question borg asks is a failure here.
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
            "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
        }
        if self.ssh_key is not None:
            words = [
                "ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-i", str(self.ssh_key),
            ]  # fmt: skip
            if self.proxy_command:
                words += ["-o", f"ProxyCommand={shlex.join(self.proxy_command)}"]
            env["BORG_RSH"] = shlex.join(words)  # borg splits it with shlex
        return env


def borg(
    repo: Repository,
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`borg ARGS` for `repo` (the location is the caller's to place among ARGS)."""
    env = {**repo.environment(), **(extra_env or {})}
    proc = subprocess.run(
        ["borg", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode not in (0, 1):  # 1: finished with warnings
        raise BorgError(f"borg {args[0]}: {reason(proc.stderr or proc.stdout)}")
    return proc


# The lines borg appends to every traceback (which platform, which version): not the reason.
_DIAGNOSTIC = re.compile(
    r"(Platform|Linux|Borg|PID|sys\.argv|SSH_ORIGINAL_COMMAND|Traceback|  File |    )"
)


def reason(text: str) -> str:
    """The line of borg's output that says what went wrong (not its traceback or platform
    lines), with the one before it when that is borg's own summary."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if not _DIAGNOSTIC.match(line)]
    for line in said:
        if re.search(r"[A-Za-z]*(Error|error|Exception|failed|denied|Integrity)", line):
            return line[:300]
    return (said[-1] if said else "no output")[:300]


def init(repo: Repository) -> bool:
    """Create the repository (repokey-blake2: the key lives in the repository, encrypted
    with the passphrase) unless it exists; True when it was created."""
    if borg(repo, "info", "--json", repo.location, check=False).returncode == 0:
        return False
    borg(repo, "init", "--encryption=repokey-blake2", "--make-parent-dirs", repo.location)
    return True


def archives(repo: Repository) -> list[dict[str, Any]]:
    """The repository's archives, oldest first: name, id, start time."""
    proc = borg(repo, "list", "--json", repo.location)
    found = json.loads(proc.stdout).get("archives") or []
    return [
        {"name": str(a["name"]), "id": str(a["id"]), "start": str(a.get("start") or a["time"])}
        for a in found
    ]


def borgmatic_config(
    repo: Repository, paths: list[str], name: str = "", keep: dict[str, int] | None = None
) -> dict[str, Any]:
    """borgmatic's configuration for this repository (borgmatic 1.7's sections): what to back
    up and the archive's exact name, or the retention to prune by."""
    storage: dict[str, Any] = {
        "encryption_passcommand": f"cat {shlex.quote(str(repo.passphrase_file))}",
        "borg_base_directory": str(repo.base_dir),
        "compression": "zstd,3",
        "relocated_repo_access_is_ok": False,
        "unknown_unencrypted_repo_access_is_ok": False,
    }
    env = repo.environment()
    if "BORG_RSH" in env:
        storage["ssh_command"] = env["BORG_RSH"]
    if name:
        storage["archive_name_format"] = name
    config: dict[str, Any] = {
        "location": {
            "source_directories": paths or ["/nonexistent-kastro-prune-only"],
            "repositories": [repo.location],
            "one_file_system": True,
        },
        "storage": storage,
    }
    if keep is not None:
        # Only this dataset's archives (borgmatic 1.7 would default to "{hostname}-*").
        prefix = repo.location.rstrip("/").rsplit("/", 1)[-1] + "-"
        config["retention"] = {"prefix": prefix, **{f"keep_{k}": v for k, v in keep.items() if v}}
        if keep.get("within_days"):
            config["retention"].pop("keep_within_days")
            config["retention"]["keep_within"] = f"{int(keep['within_days'])}d"
    return config


def borgmatic(
    repo: Repository, config_file: Path, config: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    """`borgmatic -c FILE ARGS` with `config` written to FILE (JSON, which YAML reads)."""
    config_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    proc = subprocess.run(
        ["borgmatic", "-c", str(config_file), "--syslog-verbosity", "-1", *args],
        env=repo.environment(),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        action = next((a for a in args if not a.startswith("-") and not a.isdigit()), "")
        raise BorgError(f"borgmatic {action}: {reason(proc.stderr or proc.stdout)}")
    return proc


def create(repo: Repository, name: str, paths: list[str], config_file: Path) -> dict[str, Any]:
    """A new archive `name` of `paths`, made by borgmatic; borg's statistics of it."""
    if not ARCHIVE.fullmatch(name):
        raise BorgError(f"archive name {name!r} is not DATASET-YYYY-MM-DDTHH:MM:SS")
    config = borgmatic_config(repo, paths, name)
    proc = borgmatic(repo, config_file, config, "create", "--json")
    runs = json.loads(proc.stdout)
    run = runs[0] if isinstance(runs, list) and runs else {}
    return dict(run.get("archive", {}).get("stats") or {})


def extract(repo: Repository, name: str, into: Path) -> None:
    """Archive `name` into the directory `into` (paths below it as they were below /)."""
    into.mkdir(parents=True, exist_ok=True)
    borg(repo, "extract", "--numeric-ids", f"{repo.location}::{name}", cwd=into)


def forget(repo: Repository) -> list[Path]:
    """Remove what borg remembers of this dataset's repository (its cache and the security
    record holding the newest manifest seen; each dataset has a BORG_BASE_DIR of its own):
    needed after the server rolled the repository back, which borg otherwise (rightly)
    refuses as a possible replay attack."""
    removed = []
    for part in (".config/borg/security", ".cache/borg"):
        target = repo.base_dir / part
        if target.is_dir() and not target.is_symlink():
            for child in sorted(target.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() and not child.is_symlink() else child.unlink()
            target.rmdir()
            removed.append(target)
    return removed


def umask_private() -> None:
    """Files borg and these programs create are for root (or the repository's owner) only."""
    os.umask(0o077)
