"""kastro-backup: a host's backups (BorgBackup), their restore drills, and the repository
server's side, with every result as node_exporter textfile metrics.

On a client (a host with datasets): `create` records what each dataset holds (a manifest of
its files' hashes; each PostgreSQL database dumped with per-table row counts and checksums
from one snapshot) and sends it, manifest included, to the dataset's repository, which
accepts additions only. `drill` restores the latest archive into a throwaway directory,
compares it with the manifest it carries, restores each database into a throwaway PostgreSQL
server and counts it again. `restore DATASET --to PATH` puts an archive back for a person.

On the repository server: `maintain` prunes and compacts each repository (only here: clients
cannot remove data) unless archives vanished since the last run (a client deleting archives
through append-only mode: ransomware), checks the repository's segments, and `recover` rolls a
repository back to before such a deletion (docs/backup.md).

The configuration (/etc/kastro/backup.json) is compiled on the controller by the backup roles.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kastro.host import backup_files as files
from kastro.host import backup_pg as pg
from kastro.host.backup_borg import (
    BorgError,
    Repository,
    archives,
    create,
    extract,
    forget,
    umask_private,
)
from kastro.host.backup_borg import init as init_repository
from kastro.host.textfile import write_text

CONFIG = Path("/etc/kastro/backup.json")
NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")


class ConfigError(ValueError):
    """The configuration file is not what the backup roles write."""


@dataclass(frozen=True)
class Dataset:
    name: str
    paths: list[str]
    databases: list[str]
    repository: Repository
    rpo_seconds: int
    socket_dir: str | None = None  # the local PostgreSQL's socket directory (None: its default)


@dataclass(frozen=True)
class Config:
    state_dir: Path
    metrics: Path
    datasets: dict[str, Dataset]

    @property
    def staging(self) -> Path:
        return self.state_dir / "staging"

    def status_file(self) -> Path:
        return self.state_dir / "status.json"


def _absolute(value: Any, field: str) -> Path:
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9._/-]*", value):
        raise ConfigError(f"{field}: {value!r} is not an absolute path")
    return Path(value)


def load_config(path: Path = CONFIG) -> Config:
    return config_from(json.loads(path.read_text(encoding="utf-8")))


def config_from(raw: dict[str, Any]) -> Config:
    """The configuration as the roles (or `kastro backup controller`) compile it."""
    proxy = tuple(str(w) for w in raw.get("proxy_command") or ())
    state = _absolute(raw.get("state_dir"), "state_dir")
    datasets = {}
    for name, entry in (raw.get("datasets") or {}).items():
        if not NAME.fullmatch(name):
            raise ConfigError(f"datasets: {name!r} is not a dataset name")
        repo = Repository(
            location=str(entry["repository"]),
            passphrase_file=_absolute(entry["passphrase_file"], f"{name}.passphrase_file"),
            base_dir=state / "borg" / name,
            ssh_key=_absolute(raw["ssh_key"], "ssh_key") if raw.get("ssh_key") else None,
            known_hosts=(
                _absolute(raw["known_hosts"], "known_hosts") if raw.get("known_hosts") else None
            ),
            proxy_command=proxy,
        )
        datasets[name] = Dataset(
            name,
            [str(_absolute(p, f"{name}.paths")) for p in entry.get("paths") or []],
            [str(d) for d in entry.get("postgresql") or [] if pg.DATABASE.fullmatch(str(d))],
            repo,
            int(entry.get("rpo_seconds") or 26 * 3600),
            str(_absolute(entry["socket_dir"], f"{name}.socket_dir"))
            if entry.get("socket_dir")
            else None,
        )
    return Config(state, _absolute(raw.get("metrics"), "metrics"), datasets)


@contextmanager
def locked(config: Config) -> Iterator[None]:
    """One backup program at a time on a host (a drill never reads a half-written staging)."""
    # 0711: the throwaway PostgreSQL server of a drill (the postgres user) lives below it.
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.state_dir.chmod(0o711)
    with (config.state_dir / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- create -----------------------------------------------------------------------------------


def archive_name(dataset: str, now: float) -> str:
    return f"{dataset}-{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}"


def prepare(config: Config, dataset: Dataset, now: float) -> Path:
    """The dataset's staging directory: its manifest and database dumps."""
    missing = [path for path in dataset.paths if not Path(path).exists()]
    if missing:  # borg would only warn, and an empty backup would count as a success
        raise ValueError(
            f"{', '.join(missing)}: no such path on this host (kastro_backup.datasets)"
        )
    staging = config.staging / dataset.name
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous = files.read_json(staging / "manifest.json", {})
    recorded = files.manifest(dataset.paths, previous)
    tables = {}
    for database in dataset.databases:
        tables[database] = pg.dump(database, staging / f"{database}.pgdump", dataset.socket_dir)
    for stale in staging.glob("*.pgdump"):
        if stale.stem not in dataset.databases:
            stale.unlink()
    recorded.update({"dataset": dataset.name, "time": now, "databases": tables})
    files.write_json(staging / "manifest.json", recorded)
    return staging


def create_one(config: Config, dataset: Dataset) -> dict[str, Any]:
    """One backup of `dataset`; its result as recorded in the status file."""
    started = time.time()
    result: dict[str, Any] = {"time": started, "ok": False}
    try:
        staging = prepare(config, dataset, started)
        init_repository(dataset.repository)
        name = archive_name(dataset.name, started)
        borgmatic_file = config.state_dir / "borgmatic" / f"{dataset.name}.yaml"
        stats = create(dataset.repository, name, [*dataset.paths, str(staging)], borgmatic_file)
        recorded = files.read_json(staging / "manifest.json", {})
        result.update(
            ok=True,
            archive=name,
            files=len(recorded.get("files") or {}),
            hashed=int(recorded.get("hashed") or 0),
            original_bytes=int(stats.get("original_size") or 0),
            deduplicated_bytes=int(stats.get("deduplicated_size") or 0),
        )
    except (BorgError, pg.PostgresError, OSError, ValueError) as exc:
        result["error"] = str(exc)
    result["duration"] = time.time() - started
    return result


# --- drill and restore ------------------------------------------------------------------------


def latest(dataset: Dataset) -> str:
    found = archives(dataset.repository)
    if not found:
        raise BorgError(f"{dataset.name}: the repository has no archive yet")
    return str(found[-1]["name"])


def restore(config: Config, dataset: Dataset, target: Path, archive: str | None = None) -> str:
    """`archive` (the latest when None) of `dataset` below `target`, which must be empty."""
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} is not empty: restore into a new or empty directory")
    name = archive or latest(dataset)
    extract(dataset.repository, name, target)
    return name


def verify_databases(
    config: Config, dataset: Dataset, restored: Path, recorded: dict[str, Any]
) -> dict[str, Any]:
    """Every recorded database restored into a throwaway server and counted again."""
    results: dict[str, int] = {"ok": 0, "mismatch": 0, "missing": 0}
    answered, seconds = True, 0.0
    staging = restored / str(config.staging / dataset.name).lstrip("/")
    wanted = recorded.get("databases") or {}
    if not wanted:
        return {"tables": results, "service_ok": True, "restore_seconds": 0.0}
    parent = config.state_dir / "drill-pg"
    parent.mkdir(exist_ok=True)
    parent.chmod(0o711)
    with pg.throwaway_server(parent) as socket_dir:
        for database, tables in sorted(wanted.items()):
            seconds += pg.restore(staging / f"{database}.pgdump", database, socket_dir)
            answered = answered and pg.answers(database, socket_dir)
            counted = pg.stats(database, socket_dir)
            for table, expected in tables.items():
                got = counted.get(table)
                key = "missing" if got is None else "ok" if got == expected else "mismatch"
                results[key] += 1
    return {"tables": results, "service_ok": answered, "restore_seconds": seconds}


def drill_one(config: Config, dataset: Dataset) -> dict[str, Any]:
    """Restore the latest archive into a throwaway directory and compare it with what was
    recorded when it was made."""
    started = time.time()
    result: dict[str, Any] = {"time": started, "ok": False}
    work = config.state_dir / "drill" / dataset.name
    shutil.rmtree(work, ignore_errors=True)
    try:
        name = restore(config, dataset, work)
        restored_manifest = work / str(config.staging / dataset.name).lstrip("/") / "manifest.json"
        recorded = files.read_json(restored_manifest)
        if recorded is None:
            raise ValueError(f"{name}: the archive holds no manifest")
        counts = files.compare(recorded, work)
        checked = verify_databases(config, dataset, work, recorded)
        result.update(archive=name, files=dict(counts), **checked)
        result["ok"] = (
            counts["corrupt"] == 0
            and counts["missing"] == 0
            and checked["tables"]["mismatch"] == 0
            and checked["tables"]["missing"] == 0
            and checked["service_ok"]
        )
    except (BorgError, pg.PostgresError, OSError, ValueError) as exc:
        result["error"] = str(exc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["duration"] = time.time() - started
    return result


# --- status and metrics -----------------------------------------------------------------------


def record(config: Config, dataset: str, kind: str, result: dict[str, Any]) -> dict[str, Any]:
    status = files.read_json(config.status_file(), {})
    entry = status.setdefault(dataset, {})
    entry[kind] = result
    if result.get("ok"):
        entry[f"{kind}_last_success"] = result["time"]
    files.write_json(config.status_file(), status)
    return dict(status)


def metrics_text(config: Config, status: dict[str, Any]) -> str:
    def gauge(name: str, help_text: str, values: list[tuple[str, float]]) -> list[str]:
        return [
            f"# HELP kastro_backup_{name} {help_text}",
            f"# TYPE kastro_backup_{name} gauge",
            *(f"kastro_backup_{name}{{{labels}}} {value:g}" for labels, value in values),
        ]

    rows: dict[str, list[tuple[str, float]]] = {}

    def add(name: str, labels: str, value: float | None) -> None:
        if value is not None:
            rows.setdefault(name, []).append((labels, float(value)))

    for name, dataset in sorted(config.datasets.items()):
        entry = status.get(name) or {}
        backup, drill = entry.get("backup") or {}, entry.get("drill") or {}
        label = f'dataset="{name}"'
        add("rpo_seconds", label, dataset.rpo_seconds)
        add("since_timestamp_seconds", label, entry.get("since"))
        add("last_success_timestamp_seconds", label, entry.get("backup_last_success") or 0)
        add("success", label, int(bool(backup.get("ok"))) if backup else None)
        add("duration_seconds", label, backup.get("duration"))
        add("original_bytes", label, backup.get("original_bytes"))
        add("deduplicated_bytes", label, backup.get("deduplicated_bytes"))
        add("drill_last_success_timestamp_seconds", label, entry.get("drill_last_success") or 0)
        add("drill_success", label, int(bool(drill.get("ok"))) if drill else None)
        add("drill_duration_seconds", label, drill.get("duration"))
        for result in ("ok", "changed", "corrupt", "missing"):
            if drill:
                add(
                    "drill_files",
                    f'{label},result="{result}"',
                    (drill.get("files") or {}).get(result, 0),
                )
        for result in ("ok", "mismatch", "missing"):
            if drill:
                add(
                    "drill_tables",
                    f'{label},result="{result}"',
                    (drill.get("tables") or {}).get(result, 0),
                )
    helps = {
        "since_timestamp_seconds": "When this host first had the dataset to back up.",
        "rpo_seconds": "The most data (in seconds) this dataset may lose: a backup is due within "
        "it.",
        "last_success_timestamp_seconds": "When the dataset's last successful backup started (0: "
        "never).",
        "success": "Whether the dataset's last backup succeeded (1) or failed (0).",
        "duration_seconds": "How long the dataset's last backup took.",
        "original_bytes": "The size of the dataset's last archive before deduplication.",
        "deduplicated_bytes": "What the dataset's last archive added to its repository.",
        "drill_last_success_timestamp_seconds": "When the dataset's last successful restore "
        "drill started (0: never).",
        "drill_success": "Whether the dataset's last restore drill matched what was recorded (1).",
        "drill_duration_seconds": "How long the dataset's last restore drill took.",
        "drill_files": "Files of the last drill by result: ok, changed (written during the "
        "backup), corrupt, missing.",
        "drill_tables": "Database tables of the last drill by result: ok, mismatch, missing.",
    }
    lines: list[str] = []
    for name, help_text in helps.items():
        if name in rows:
            lines += gauge(name, help_text, rows[name])
    return "\n".join(lines) + "\n"


def publish(config: Config) -> None:
    """The metrics file from the status file; a dataset seen for the first time is recorded
    with the time (`since`), so the RPO and drill alerts count from then, not from 1970."""
    status = files.read_json(config.status_file(), {})
    now = time.time()
    if any("since" not in status.get(name, {}) for name in config.datasets):
        for name in config.datasets:
            status.setdefault(name, {}).setdefault("since", now)
        files.write_json(config.status_file(), status)
    write_text(config.metrics, metrics_text(config, status))


# --- the command line -------------------------------------------------------------------------


def _chosen(config: Config, names: list[str]) -> list[Dataset]:
    unknown = [n for n in names if n not in config.datasets]
    if unknown:
        known = ", ".join(sorted(config.datasets)) or "(κανένα / none)"
        raise ConfigError(
            f"άγνωστο σύνολο δεδομένων / unknown dataset: {', '.join(unknown)} (known: {known})"
        )
    return [config.datasets[n] for n in names] if names else list(config.datasets.values())


def report(kind: str, dataset: str, result: dict[str, Any]) -> None:
    word = "εντάξει / ok" if result.get("ok") else "ΑΠΕΤΥΧΕ / FAILED"
    detail = result.get("error") or result.get("archive", "")
    extra = ""
    if kind == "drill" and "files" in result:
        extra = f" files={result['files']} tables={result.get('tables')}"
    print(f"{kind} {dataset}: {word} ({result.get('duration', 0):.1f} s) {detail}{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-backup", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("create", "drill"):
        sub.add_parser(command).add_argument("datasets", nargs="*")
    put = sub.add_parser("restore")
    put.add_argument("dataset")
    put.add_argument("--to", type=Path, required=True, help="a new or empty directory")
    put.add_argument("--archive", default=None)
    sub.add_parser("status")
    sub.add_parser("list").add_argument("dataset")
    sub.add_parser("metrics")
    sub.add_parser("forget").add_argument("dataset")
    args = parser.parse_args(argv)
    umask_private()
    try:
        config = load_config(args.config)
        return _run(config, args)
    except (ConfigError, BorgError, ValueError, OSError) as exc:
        print(f"kastro-backup: {exc}", file=sys.stderr)
        return 2


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.command in ("create", "drill"):
        failed = 0
        with locked(config):
            for dataset in _chosen(config, args.datasets):
                one = create_one if args.command == "create" else drill_one
                result = one(config, dataset)
                record(
                    config, dataset.name, "backup" if args.command == "create" else "drill", result
                )
                report(args.command, dataset.name, result)
                failed += not result["ok"]
            publish(config)
        return 1 if failed else 0
    if args.command == "restore":
        (dataset,) = _chosen(config, [args.dataset])
        if not args.to.is_absolute():
            raise ValueError(f"--to {args.to}: give an absolute path")
        name = restore(config, dataset, args.to, args.archive)
        print(f"επαναφορά / restored {dataset.name} {name} -> {args.to}")
        return 0
    if args.command == "list":
        (dataset,) = _chosen(config, [args.dataset])
        for archive in archives(dataset.repository):
            print(f"{archive['name']}  {archive['start']}")
        return 0
    if args.command == "forget":
        (dataset,) = _chosen(config, [args.dataset])
        for removed in forget(dataset.repository):
            print(f"removed {removed}")
        return 0
    if args.command == "metrics":
        publish(config)
        return 0
    print(json.dumps(files.read_json(config.status_file(), {}), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
