"""Backup and restore throughput, and the recovery time, with Kastro's own backup code.

A reference dataset (default 2 GiB of files - half random, half text-like - and a PostgreSQL
database of about 500 MB) is backed up by kastro-backup through `borg serve --append-only`
(as the server's forced command runs it), restored by a drill (files compared with the
manifest, the database restored into a throwaway server and counted again), at a quarter,
a half and all of the reference size, so the numbers show how the cost grows. The peer, in
the same run: `tar | zstd -3` for the files, plain `pg_dump -Fc` for the database, `tar -x`
for the restore. Everything is local to this machine (a private directory and a throwaway
PostgreSQL on a Unix socket); nothing goes on the network.

    sudo .venv/bin/python benchmarks/backup_bench.py [--gib 2] [--db-mb 500] [--steps 0.25,0.5,1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kastro.host import backup, backup_pg

MIB = 1 << 20


def make_files(root: Path, size: int) -> None:
    """`size` bytes in 8 MiB files: odd ones random (incompressible), even ones repetitive."""
    root.mkdir(parents=True, exist_ok=True)
    chunk, index = 8 * MIB, 0
    text = (b"\xce\xb1\xce\xaf\xcf\x84\xce\xb7\xcf\x83\xce\xb7 request form line\n" * 300_000)[
        :chunk
    ]
    while index * chunk < size:
        data = os.urandom(chunk) if index % 2 else text
        (root / f"f{index:05d}.bin").write_bytes(data)
        index += 1


def make_database(socket: str, megabytes: int) -> None:
    rows = megabytes * 1024 * 1024 // 200  # about 200 bytes a row with its overhead
    backup_pg._run(["createdb", "-h", socket, "bench"])
    backup_pg._run(
        [*backup_pg._psql("bench", socket), "-v", f"rows={rows}"],
        input=(
            "CREATE TABLE records (id bigint primary key, citizen text, body text);"
            "INSERT INTO records SELECT g, 'πολίτης ' || g, md5(g::text) || repeat('x', 100) "
            "FROM generate_series(1, :rows) g;"
        ),
    )


def timed(argv: list[str], **kwargs: object) -> float:
    started = time.monotonic()
    kwargs.setdefault("stderr", subprocess.PIPE)
    if "stdout" not in kwargs:
        kwargs["stdout"] = subprocess.PIPE
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]
    return time.monotonic() - started


def run_step(work: Path, size: int, db_mb: int) -> dict[str, float]:
    share, repos = work / "share", work / "repos"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    work.chmod(0o711)
    make_files(share, size)
    secret = work / "pass"
    secret.write_text("benchmark passphrase\n")
    serve = work / "ssh"
    serve.write_text(f"#!/bin/sh\nexec borg serve --append-only --restrict-to-path {repos}\n")
    serve.chmod(0o755)
    result: dict[str, float] = {"files_mib": size / MIB, "db_mb": db_mb}
    with backup_pg.throwaway_server(work / "live") as socket:
        make_database(socket, db_mb)
        config = backup.config_from({
            "state_dir": str(work / "state"), "metrics": str(work / "metrics.prom"),
            "datasets": {"bench": {
                "paths": [str(share)], "postgresql": ["bench"], "socket_dir": socket,
                "repository": f"ssh://bench@local{repos}/bench", "passphrase_file": str(secret),
            }},
        })  # fmt: skip
        os.environ["BORG_RSH"] = str(serve)
        original = backup.Repository.environment

        def environment(self: backup.Repository) -> dict[str, str]:
            return {**original(self), "BORG_RSH": str(serve)}

        backup.Repository.environment = environment  # type: ignore[method-assign]
        dataset = config.datasets["bench"]
        made = backup.create_one(config, dataset)
        assert made["ok"], made
        result["backup_s"] = made["duration"]
        again = backup.create_one(config, dataset)  # nothing changed: deduplicated
        result["second_backup_s"] = again["duration"]
        drilled = backup.drill_one(config, dataset)
        assert drilled["ok"], drilled
        result["drill_s"] = drilled["duration"]
        result["db_restore_s"] = drilled["restore_seconds"]
        result["peer_tar_zstd_s"] = timed(
            ["sh", "-c", f"tar -C {share} -cf - . | zstd -3 -q -T1 -o {work / 'peer.tar.zst'}"]
        )
        result["peer_untar_s"] = timed(
            ["sh", "-c", f"mkdir -p {work / 'untar'} && zstd -dc {work / 'peer.tar.zst'} | "
             f"tar -C {work / 'untar'} -xf -"]
        )  # fmt: skip
        dump = work / "peer.pgdump"
        with dump.open("wb") as out:
            result["peer_pg_dump_s"] = timed(
                backup_pg._as_postgres(["pg_dump", "-Fc", "-h", socket, "bench"]), stdout=out
            )
        with backup_pg.throwaway_server(work / "peer-pg") as other:
            backup_pg._run(["createdb", "-h", other, "bench"])
            with dump.open("rb") as data:
                result["peer_pg_restore_s"] = timed(
                    backup_pg._as_postgres(["pg_restore", "-h", other, "-d", "bench"]), stdin=data
                )
        backup.Repository.environment = original  # type: ignore[method-assign]
    result["repository_mib"] = sum(p.stat().st_size for p in repos.rglob("*") if p.is_file()) / MIB
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="reference files size (GiB)")
    parser.add_argument("--db-mb", type=int, default=500, help="reference database size (MB)")
    parser.add_argument("--steps", default="0.25,0.5,1", help="fractions of the reference")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (the throwaway PostgreSQL runs as postgres)")
    base = Path(tempfile.mkdtemp(prefix="kastro-backup-bench-", dir="/var/tmp"))
    base.chmod(0o711)
    rows = []
    try:
        for step in (float(s) for s in args.steps.split(",")):
            rows.append(
                run_step(base / "w", int(args.gib * step * 1024 * MIB), int(args.db_mb * step))
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    header = ["files MiB", "DB MB", "backup s", "MiB/s", "vs tar+zstd and pg_dump",
              "2nd backup s", "drill s", "vs untar and pg_restore", "DB restore s",
              "repository MiB"]  # fmt: skip
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        backup_peer = r["peer_tar_zstd_s"] + r["peer_pg_dump_s"]
        restore_peer = r["peer_untar_s"] + r["peer_pg_restore_s"]
        cells = [
            f"{r['files_mib']:.0f}", f"{r['db_mb']:.0f}", f"{r['backup_s']:.1f}",
            f"{(r['files_mib'] + r['db_mb']) / r['backup_s']:.0f}",
            f"{r['backup_s'] / backup_peer:.2f}x", f"{r['second_backup_s']:.1f}",
            f"{r['drill_s']:.1f}", f"{r['drill_s'] / restore_peer:.2f}x",
            f"{r['db_restore_s']:.1f}", f"{r['repository_mib']:.0f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
