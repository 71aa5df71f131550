"""kastro-backup-server: the repository server's side of Kastro's backups.

Clients reach their repositories through `borg serve --append-only`: they add archives and
can never remove data. A client that runs `borg delete` or `borg prune` (ransomware with
root on it) only writes a newer manifest without those archives; the data stays until
someone compacts the repository, and only this server does. So `maintain`, once a day per
repository, first compares the archives with those it saw last time: when any vanished that
it did not prune itself, it prunes and compacts nothing, counts them as a metric (an alert)
and leaves the repository for `recover`. Otherwise it prunes by the retention, compacts, and
checks the repository's segments (every chunk's checksum) when the last check is older than
`check_days`.

`recover REPOSITORY --before TIME` rolls a repository back to its last transaction committed
before TIME (the procedure borg documents for append-only repositories: later segments,
index, hints and integrity files removed, the index rebuilt by `borg check`).

Runs as the repositories' owner (the kastro-backup user), never as root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kastro.host import backup_files as files
from kastro.host.backup_borg import (
    BorgError,
    Repository,
    archives,
    borg,
    borgmatic,
    borgmatic_config,
    umask_private,
)
from kastro.host.textfile import write_text

CONFIG = Path("/etc/kastro/backup-server.json")
REPOSITORY = re.compile(r"[a-z0-9][a-z0-9-]{0,62}/[a-z][a-z0-9-]{0,40}")
TRANSACTION = re.compile(r"transaction (\d+), UTC time (\S+)")
KEEP = ("daily", "weekly", "monthly", "yearly")
WITHIN = "within_days"  # every archive of the last N days


class ServerError(RuntimeError):
    """The server cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Server:
    root: Path
    state_dir: Path
    metrics: Path
    check_days: int
    repositories: dict[str, dict[str, Any]]

    def repository(self, name: str) -> Repository:
        entry = self.repositories[name]
        return Repository(
            location=str(self.root / name),
            passphrase_file=Path(entry["passphrase_file"]),
            base_dir=self.state_dir / "borg",
        )


def load_server(path: Path = CONFIG) -> Server:
    raw = json.loads(path.read_text(encoding="utf-8"))
    repositories = raw.get("repositories") or {}
    bad = [name for name in repositories if not REPOSITORY.fullmatch(name)]
    if bad:
        raise ServerError(f"repositories: {bad} are not HOST/DATASET names")
    return Server(
        Path(raw["root"]),
        Path(raw["state_dir"]),
        Path(raw["metrics"]),
        int(raw.get("check_days") or 7),
        repositories,
    )


def _seen_file(server: Server, name: str) -> Path:
    return server.state_dir / "seen" / f"{name.replace('/', '--')}.json"


def vanished(server: Server, name: str, current: list[dict[str, Any]]) -> list[str]:
    """Archives seen at the last maintenance that are gone and were not pruned here."""
    seen = files.read_json(_seen_file(server, name), {"archives": [], "pruned": []})
    now = {a["id"] for a in current}
    pruned = set(seen.get("pruned") or [])
    return sorted(a["name"] for a in seen["archives"] if a["id"] not in now | pruned)


ARCHIVE_ID = re.compile(r"Would prune:.*\[([0-9a-f]{64})\]")


def prune(server: Server, name: str) -> list[str]:
    """Prune by the repository's retention; the ids of the archives the retention removes
    (asked first with --dry-run, so that an archive a client deletes meanwhile is not taken
    for one this server pruned)."""
    repo = server.repository(name)
    keep = server.repositories[name].get("retention") or {}
    keep = {k: int(keep.get(k) or 0) for k in (*KEEP, WITHIN) if int(keep.get(k) or 0) > 0}
    if not keep:
        return []
    config = borgmatic_config(repo, [], keep=keep)
    file = _borgmatic_file(server, name)
    planned = borgmatic(repo, file, config, "-v", "1", "prune", "--dry-run", "--list")
    ids = sorted(set(ARCHIVE_ID.findall(planned.stdout + planned.stderr)))
    if ids:
        borgmatic(repo, file, config, "prune")
    return ids


def _borgmatic_file(server: Server, name: str) -> Path:
    """The repository's borgmatic configuration (an admin may run borgmatic with it)."""
    return server.state_dir / "borgmatic" / f"{name.replace('/', '--')}.yaml"


def check(server: Server, name: str, state: dict[str, Any], now: float) -> None:
    """`borg check --repository-only` (every segment's CRCs, no key needed) when due."""
    last = float(state.get("check_last_success") or 0)
    if now - last < server.check_days * 86400 and state.get("check_ok", True):
        return
    repo = server.repository(name)
    proc = borg(repo, "check", "--repository-only", repo.location, check=False)
    state["check_ok"] = proc.returncode == 0
    state["check_time"] = now
    state["check_output"] = (proc.stderr or "").strip()[-800:]
    if state["check_ok"]:
        state["check_last_success"] = now


def maintain_one(server: Server, name: str, now: float) -> dict[str, Any]:
    state = files.read_json(server.state_dir / "status.json", {}).get(name) or {}
    repo = server.repository(name)
    state.update(time=now, ok=False)
    try:
        current = archives(repo)
        gone = vanished(server, name, current)
        state["vanished"] = gone
        if gone:
            state["error"] = (
                f"{len(gone)} archives vanished without a prune here (a client deleted them): "
                "nothing pruned or compacted; see docs/backup.md, recover"
            )
        else:
            pruned = prune(server, name)
            after = archives(repo)
            # Anything else gone now went during this run: not compacted, like any deletion.
            also = {a["id"] for a in current} - {a["id"] for a in after} - set(pruned)
            if also:
                state["vanished"] = sorted(a["name"] for a in current if a["id"] in also)
                raise BorgError(
                    f"{len(also)} archives vanished during the maintenance; nothing compacted"
                )
            config = borgmatic_config(repo, [])
            borgmatic(repo, _borgmatic_file(server, name), config, "compact")
            current = after
            seen = files.read_json(_seen_file(server, name), {})
            # This server's own commits are not in borg's transaction log (only append-only
            # commits are): recorded here, so a rollback never cuts below a compaction.
            commits = [*(seen.get("commits") or [])[-20:], [last_segment(server.root / name), now]]
            files.write_json(
                _seen_file(server, name),
                {"archives": current, "pruned": pruned, "commits": commits},
            )
            state.pop("error", None)
            state["ok"] = True
        state["archives"] = len(current)
        check(server, name, state, now)
    except (BorgError, OSError, ValueError) as exc:
        state["error"] = str(exc)
    return dict(state)


def repository_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def metrics_text(server: Server, status: dict[str, Any]) -> str:
    rows: dict[str, list[str]] = {}
    for name in sorted(server.repositories):
        entry = status.get(name) or {}
        label = f'repository="{name}"'
        values = {
            "maintenance_success": int(bool(entry.get("ok"))),
            "archives": entry.get("archives", 0),
            "archives_vanished": len(entry.get("vanished") or []),
            "size_bytes": entry.get("size_bytes", 0),
        }
        if "check_time" in entry:  # a repository not created yet has nothing to check
            values["check_success"] = int(bool(entry.get("check_ok", False)))
            values["check_last_success_timestamp_seconds"] = entry.get("check_last_success", 0)
        for metric, value in values.items():
            rows.setdefault(metric, []).append(
                f"kastro_backup_repository_{metric}{{{label}}} {float(value):g}"
            )
    helps = {
        "maintenance_success": "Whether the last prune/compact of the repository succeeded (1).",
        "archives": "Archives in the repository after the last maintenance.",
        "archives_vanished": "Archives a client deleted (append-only: recoverable; nothing is "
        "compacted until recovered).",
        "check_success": "Whether the last repository check (segment checksums) passed (1).",
        "check_last_success_timestamp_seconds": "When the repository last passed a check (0: "
        "never).",
        "size_bytes": "The repository's size on disk.",
    }
    lines = []
    for metric, help_text in helps.items():
        lines += [
            f"# HELP kastro_backup_repository_{metric} {help_text}",
            f"# TYPE kastro_backup_repository_{metric} gauge",
            *rows.get(metric, []),
        ]
    return "\n".join(lines) + "\n"


def maintain(server: Server, names: list[str]) -> int:
    status = files.read_json(server.state_dir / "status.json", {})
    failed = 0
    for name in names or sorted(server.repositories):
        if name not in server.repositories:
            raise ServerError(f"unknown repository {name}; known: {sorted(server.repositories)}")
        if not (server.root / name / "config").exists():
            status[name] = {
                "time": time.time(),
                "ok": True,
                "archives": 0,
                "note": "not created yet",
            }
            continue
        status[name] = maintain_one(server, name, time.time())
        status[name]["size_bytes"] = repository_bytes(server.root / name)
        word = "εντάξει / ok" if status[name]["ok"] else "ΠΡΟΣΟΧΗ / ATTENTION"
        print(f"{name}: {word} {status[name].get('error', '')}".rstrip())
        failed += not status[name]["ok"] or not status[name].get("check_ok", True)
    files.write_json(server.state_dir / "status.json", status)
    write_text(server.metrics, metrics_text(server, status))
    return 1 if failed else 0


def last_segment(path: Path) -> int:
    numbers = [int(p.name) for p in (path / "data").rglob("*") if p.is_file() and p.name.isdigit()]
    return max(numbers, default=0)


def transactions(server: Server, name: str) -> list[tuple[int, dt.datetime]]:
    """Every commit known before a rollback: the clients' (borg's transaction log, written in
    append-only mode) and this server's own maintenance commits, in segment order."""
    path = server.root / name
    found = [
        (int(n), dt.datetime.fromtimestamp(t, dt.UTC))
        for n, t in files.read_json(_seen_file(server, name), {}).get("commits") or []
    ]
    for line in (path / "transactions").read_text(encoding="utf-8").splitlines():
        match = TRANSACTION.fullmatch(line.strip())
        if match:
            when = dt.datetime.fromisoformat(match.group(2)).replace(tzinfo=dt.UTC)
            found.append((int(match.group(1)), when))
    return sorted(found)


def recover(server: Server, name: str, before: dt.datetime) -> int:
    """Roll repository `name` back to its last transaction committed before `before`."""
    path = server.root / name
    kept = [t for t in transactions(server, name) if t[1] < before]
    if not kept:
        raise ServerError(f"{name}: no transaction before {before.isoformat()}")
    last = kept[-1][0]
    for segment in (path / "data").rglob("*"):
        if segment.is_file() and segment.name.isdigit() and int(segment.name) > last:
            segment.unlink()
    for stale in path.glob("*"):
        if stale.name.split(".")[0] in ("index", "hints", "integrity"):
            stale.unlink()
    text = (path / "transactions").read_text(encoding="utf-8").splitlines()
    lines = [x for x in text if (m := TRANSACTION.fullmatch(x.strip())) and int(m.group(1)) <= last]
    (path / "transactions").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    for part in (".config/borg/security", ".cache/borg"):
        for child in sorted((server.state_dir / "borg" / part).rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
    repo = server.repository(name)
    borg(repo, "check", "--repository-only", repo.location)
    print(f"{name}: rolled back to transaction {last}; archives: "
          f"{', '.join(a['name'] for a in archives(repo))}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kastro-backup-server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("maintain").add_argument("repositories", nargs="*")
    sub.add_parser("status", help="each repository's last maintenance, as JSON")
    back = sub.add_parser("recover")
    back.add_argument("repository")
    back.add_argument("--before", required=True, help="UTC time, e.g. 2026-12-07T09:30:00")
    args = parser.parse_args(argv)
    umask_private()
    try:
        server = load_server(args.config)
        if args.command == "status":
            status = files.read_json(server.state_dir / "status.json", {})
            for name in server.repositories:
                status.setdefault(name, {"note": "not maintained yet"})
            print(json.dumps(status, indent=2, sort_keys=True))
            return 0
        if server.root.exists() and server.root.stat().st_uid != os.geteuid():
            raise ServerError(
                f"run as the owner of {server.root} (runuser -u kastro-backup -- "
                "kastro-backup-server ...), or files would change owner"
            )
        if args.command == "maintain":
            return maintain(server, args.repositories)
        if args.repository not in server.repositories:
            raise ServerError(f"unknown repository {args.repository}")
        before = dt.datetime.fromisoformat(args.before).replace(tzinfo=dt.UTC)
        return recover(server, args.repository, before)
    except (ServerError, BorgError, OSError, ValueError, KeyError) as exc:
        print(f"kastro-backup-server: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
