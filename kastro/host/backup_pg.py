"""PostgreSQL for the backups: a dump and its per-table row counts and checksums taken from
one snapshot, and a throwaway server to restore a dump into and count it again.

The dump and the counts must describe the same data, or a drill could never tell a bad
restore from rows written while the dump ran. One session opens a REPEATABLE READ
transaction and exports its snapshot; pg_dump (--snapshot) and the counting session import
it, so all three see the database as it was at that instant, whatever is written meanwhile.

The counts never splice a table name into SQL in Python: the statement lists the tables and
quotes them itself (format('%I.%I')), and query_to_xml runs the per-table query.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATABASE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SNAPSHOT = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")
RUNAS = "postgres"
# Per table: its rows, and the sum of the first 60 bits of each row's MD5 (order-free, so
# equal for the same rows however a restore lays them out).
STATS_SQL = """
SELECT format('%I.%I', schemaname, tablename) AS name,
       (xpath('/row/c/text()', x))[1]::text AS rows,
       (xpath('/row/s/text()', x))[1]::text AS checksum
FROM (SELECT schemaname, tablename,
             query_to_xml(format(
               'SELECT count(*) AS c, coalesce(sum((''x'' || substr(md5(t::text), 1, 15))'
               '::bit(60)::bigint), 0) AS s FROM %I.%I t', schemaname, tablename),
               false, true, '') AS x
      FROM pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) AS counted
ORDER BY name
"""


class PostgresError(RuntimeError):
    """A PostgreSQL program failed."""


def _bin(program: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl) from the newest installed version."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    for directory in reversed(versions):
        if (directory / program).exists():
            return str(directory / program)
    raise PostgresError(f"{program}: PostgreSQL is not installed (apt install postgresql)")


def _as_postgres(argv: list[str]) -> list[str]:
    return argv if os.geteuid() != 0 else ["runuser", "-u", RUNAS, "--", *argv]


def _run(argv: list[str], **kwargs: object) -> str:
    proc = subprocess.run(
        _as_postgres(argv),
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if proc.returncode != 0:
        raise PostgresError(f"{argv[0]}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return str(proc.stdout)


def parse_stats(text: str) -> dict[str, dict[str, int]]:
    """psql's unaligned rows (name|rows|checksum) as {table: {rows, checksum}}."""
    stats = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].isdigit() and re.fullmatch(r"-?\d+", parts[2]):
            stats[parts[0]] = {"rows": int(parts[1]), "checksum": int(parts[2])}
    return stats


def _psql(database: str, host: str | None = None) -> list[str]:
    argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database]
    return argv + (["-h", host] if host else [])


def dump(database: str, target: Path, host: str | None = None) -> dict[str, dict[str, int]]:
    """`database` into `target` (pg_dump's custom format) and the counts of the same snapshot."""
    if not DATABASE.fullmatch(database):
        raise PostgresError(f"{database!r} is not a database name (a-z, 0-9, _)")
    holder = subprocess.Popen(
        _as_postgres(_psql(database, host)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        holder.stdin.write(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n"
        )
        holder.stdin.flush()
        snapshot = holder.stdout.readline().strip()
        if not SNAPSHOT.fullmatch(snapshot):
            raise PostgresError(f"{database}: no snapshot ({snapshot!r})")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            proc = subprocess.run(
                _as_postgres(
                    ["pg_dump", "-Fc", f"--snapshot={snapshot}", *(["-h", host] if host else []),
                     database]
                ),
                stdout=out,
                stderr=subprocess.PIPE,
                check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise PostgresError(f"pg_dump {database}: {proc.stderr.decode()[-500:]}")
        counting = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
            f"SET TRANSACTION SNAPSHOT '{snapshot}';\n{STATS_SQL};\nCOMMIT;\n"
        )
        return parse_stats(_run(_psql(database, host), input=counting))
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def stats(database: str, host: str | None = None) -> dict[str, dict[str, int]]:
    return parse_stats(_run(_psql(database, host), input=STATS_SQL + ";\n"))


@contextmanager
def throwaway_server(parent: Path) -> Iterator[str]:
    """A private PostgreSQL server in a new directory below `parent`, listening on a Unix
    socket there only (no TCP port); yields the socket directory, removes it all after."""
    if not parent.exists():
        parent.mkdir(parents=True)
        parent.chmod(0o711)  # the postgres user passes through to its own directory
    work = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
    if os.geteuid() == 0:
        shutil.chown(work, RUNAS, RUNAS)
    data = work / "data"
    try:
        _run([_bin("initdb"), "-A", "peer", "-U", RUNAS, "-D", str(data)])
        options = f"-c listen_addresses='' -c unix_socket_directories='{work}' -c fsync=off"
        _run([_bin("pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o", options,
              "-l", str(work / "log"), "start"])  # fmt: skip
        yield str(work)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(work, ignore_errors=True)


def restore(dump_file: Path, database: str, socket_dir: str) -> float:
    """The dump into a new database on the throwaway server; how long it took (s)."""
    if not DATABASE.fullmatch(database):
        raise PostgresError(f"{database!r} is not a database name (a-z, 0-9, _)")
    started = time.monotonic()
    _run(["createdb", "-h", socket_dir, database])
    with dump_file.open("rb") as data:
        proc = subprocess.run(
            _as_postgres(["pg_restore", "--no-owner", "-h", socket_dir, "-d", database]),
            stdin=data,
            capture_output=True,
            check=False,
        )
    if proc.returncode != 0:
        raise PostgresError(f"pg_restore {database}: {proc.stderr.decode()[-500:]}")
    return time.monotonic() - started


def answers(database: str, socket_dir: str) -> bool:
    """The restored server answers a query on the restored database."""
    try:
        return _run(_psql(database, socket_dir), input="SELECT 42;\n").strip() == "42"
    except PostgresError:
        return False
