"""kastro-backup and kastro-backup-server with the real borg and a real PostgreSQL.

The client reaches its repositories through an `ssh` stand-in that runs exactly what the
server's authorized_keys forces (`borg serve --append-only --restrict-to-path ROOT/HOST`), so
the client's powers are the ones it has in production. The database is a throwaway
PostgreSQL server of the test's own, on a Unix socket (no TCP port).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kastro.host import backup, backup_pg, backup_server
from kastro.host.backup_borg import borg

pytestmark = pytest.mark.skipif(
    shutil.which("borg") is None or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="needs borgbackup and postgresql (make deps installs them)",
)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as the postgres user")


@pytest.fixture
def site(tmp_path: Path):
    """A server root, a client's config and a share with a few files."""
    root = tmp_path / "server" / "repos"
    (root / "fileserver").mkdir(parents=True)
    share = tmp_path / "share"
    (share / "docs").mkdir(parents=True)
    (share / "docs" / "minutes.txt").write_text("πρακτικά δημοτικού συμβουλίου\n")
    (share / "budget.ods").write_bytes(os.urandom(300_000))
    secret = tmp_path / "secret"
    secret.write_text("correct horse battery staple\n")
    secret.chmod(0o600)
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(
        "#!/bin/sh\n# what authorized_keys forces, whatever the client asks\n"
        f"exec borg serve --append-only --restrict-to-path {root / 'fileserver'}\n"
    )
    fake_ssh.chmod(0o755)
    state = tmp_path / "state"
    config = {
        "state_dir": str(state),
        "metrics": str(tmp_path / "metrics" / "kastro_backup.prom"),
        "datasets": {
            "shares": {
                "paths": [str(share)],
                "repository": f"ssh://kastro-backup@vault{root}/fileserver/shares",
                "passphrase_file": str(secret),
                "rpo_seconds": 93600,
            }
        },
    }
    (tmp_path / "backup.json").write_text(json.dumps(config))
    server = {
        "root": str(root),
        "state_dir": str(tmp_path / "server" / "state"),
        "metrics": str(tmp_path / "metrics" / "kastro_backup_server.prom"),
        "check_days": 7,
        "repositories": {
            "fileserver/shares": {"passphrase_file": str(secret), "retention": {"daily": 7}}
        },
    }
    (tmp_path / "backup-server.json").write_text(json.dumps(server))
    return tmp_path, share, fake_ssh


def client(site, *args: str) -> int:
    tmp, _, _fake_ssh = site
    return backup.main(["--config", str(tmp / "backup.json"), *args])


@pytest.fixture(autouse=True)
def keep_umask():
    """The programs set the process umask (0077) for themselves: put the test's back."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


@pytest.fixture(autouse=True)
def fake_ssh_for_borg(monkeypatch, site):
    """BORG_RSH is the stand-in (no ssh_key in the config, so Repository sets none)."""
    original = backup.Repository.environment

    def environment(self):
        env = original(self)
        if self.location.startswith("ssh://"):
            env["BORG_RSH"] = str(site[2])
        return env

    monkeypatch.setattr(backup.Repository, "environment", environment)


def server(site, *args: str) -> int:
    return backup_server.main(["--config", str(site[0] / "backup-server.json"), *args])


def restored_tree(path: Path, share: Path) -> dict[str, bytes]:
    base = path / str(share).lstrip("/")
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def metric(path: Path, line_start: str) -> float:
    for line in path.read_text().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in {path}")


def test_backup_change_delete_restore_to_a_point_in_time(site):
    tmp, share, _ = site
    original = {str(p.relative_to(share)): p.read_bytes() for p in share.rglob("*") if p.is_file()}
    assert client(site, "create") == 0
    (share / "docs" / "minutes.txt").write_text("αλλοιωμένο\n")
    (share / "budget.ods").unlink()
    assert client(site, "create") == 0
    config = backup.load_config(tmp / "backup.json")
    names = [a["name"] for a in backup.archives(config.datasets["shares"].repository)]
    assert len(names) == 2
    assert client(site, "restore", "shares", "--to", str(tmp / "r1"), "--archive", names[0]) == 0
    assert restored_tree(tmp / "r1", share) == original
    # Not over existing data.
    assert client(site, "restore", "shares", "--to", str(tmp / "r1")) == 2


def test_borgmatic_makes_the_archive_and_an_admin_can_use_its_configuration(site):
    """kastro-backup creates through borgmatic, with a configuration file an admin can run
    borgmatic with by hand (here: list), which names the same repository and passphrase."""
    tmp, _, fake_ssh = site
    assert client(site, "create") == 0
    config_file = tmp / "state" / "borgmatic" / "shares.yaml"
    listed = subprocess.run(
        ["borgmatic", "-c", str(config_file), "--syslog-verbosity", "-1", "list", "--json"],
        env={**os.environ, "BORG_RSH": str(fake_ssh)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    names = [a["name"] for a in json.loads(listed.stdout)[0]["archives"]]
    assert len(names) == 1 and names[0].startswith("shares-")


def test_drill_passes_and_reports_metrics(site):
    tmp, _share, _ = site
    assert client(site, "create") == 0
    assert client(site, "drill") == 0
    prom = tmp / "metrics" / "kastro_backup.prom"
    assert metric(prom, 'kastro_backup_drill_success{dataset="shares"}') == 1
    assert metric(prom, 'kastro_backup_drill_files{dataset="shares",result="ok"}') == 2
    assert metric(prom, 'kastro_backup_last_success_timestamp_seconds{dataset="shares"}') > 0


def test_a_drill_that_does_not_match_fails(site, monkeypatch):
    """A restore that differs from the manifest (bytes changed, size and mtime kept) fails
    the drill and says so in the metrics."""
    tmp, share, _ = site
    assert client(site, "create") == 0
    real_extract = backup.extract

    def damaging_extract(repo, name, into):
        real_extract(repo, name, into)
        victim = into / str(share).lstrip("/") / "budget.ods"
        st = victim.stat()
        data = bytearray(victim.read_bytes())
        data[1000] ^= 0xFF
        victim.write_bytes(bytes(data))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    monkeypatch.setattr(backup, "extract", damaging_extract)
    assert client(site, "drill") == 1
    prom = tmp / "metrics" / "kastro_backup.prom"
    assert metric(prom, 'kastro_backup_drill_success{dataset="shares"}') == 0
    assert metric(prom, 'kastro_backup_drill_files{dataset="shares",result="corrupt"}') == 1
    assert metric(prom, 'kastro_backup_drill_last_success_timestamp_seconds{dataset="shares"}') == 0


def test_ransomware_cannot_destroy_history_and_the_server_recovers_it(site):
    """Root on the client encrypts the share, deletes and prunes every archive: the repository
    itself cannot be deleted, the server's maintenance sees the vanished archives and compacts
    nothing, and a rollback brings the last good archive back, restoring 100 %."""
    tmp, share, _ = site
    original = {str(p.relative_to(share)): p.read_bytes() for p in share.rglob("*") if p.is_file()}
    assert client(site, "create") == 0
    assert server(site, "maintain") == 0
    attack = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    config = backup.load_config(tmp / "backup.json")
    repo = config.datasets["shares"].repository
    for path in share.rglob("*"):
        if path.is_file():
            path.write_bytes(bytes(b ^ 0x5A for b in path.read_bytes()))
    assert borg(repo, "delete", "--glob-archives", "*", repo.location, check=False).returncode == 0
    assert borg(repo, "prune", "--keep-last=1", repo.location, check=False).returncode == 0
    assert backup.archives(repo) == []  # to the client, history is gone
    whole = borg(
        repo, "delete", repo.location, check=False,
        extra_env={"BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "YES"},
    )  # fmt: skip
    assert whole.returncode != 0 and "append-only" in whole.stderr
    assert borg(repo, "compact", repo.location, check=False).returncode == 0  # a no-op
    # The server notices and keeps everything.
    assert server(site, "maintain") == 1
    prom = tmp / "metrics" / "kastro_backup_server.prom"
    assert (
        metric(prom, 'kastro_backup_repository_archives_vanished{repository="fileserver/shares"}')
        == 1
    )
    # Its owner rolls the repository back to before the attack.
    assert server(site, "recover", "fileserver/shares", "--before", attack.isoformat()) == 0
    assert client(site, "forget", "shares") == 0
    assert client(site, "restore", "shares", "--to", str(tmp / "after")) == 0
    assert restored_tree(tmp / "after", share) == original
    assert server(site, "maintain") == 0
    assert (
        metric(prom, 'kastro_backup_repository_archives_vanished{repository="fileserver/shares"}')
        == 0
    )


def test_a_corrupt_chunk_fails_the_next_check(site):
    tmp, _share, _ = site
    assert client(site, "create") == 0
    assert server(site, "maintain") == 0
    prom = tmp / "metrics" / "kastro_backup_server.prom"
    assert (
        metric(prom, 'kastro_backup_repository_check_success{repository="fileserver/shares"}') == 1
    )
    segments = sorted(
        (p for p in (tmp / "server" / "repos" / "fileserver" / "shares" / "data").rglob("*")
         if p.is_file()),
        key=lambda p: p.stat().st_size,
    )  # fmt: skip
    biggest = segments[-1]
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    # Due now: the last check is made old.
    status_file = tmp / "server" / "state" / "status.json"
    status = json.loads(status_file.read_text())
    status["fileserver/shares"]["check_last_success"] = 0
    status_file.write_text(json.dumps(status))
    assert server(site, "maintain") == 1
    assert (
        metric(prom, 'kastro_backup_repository_check_success{repository="fileserver/shares"}') == 0
    )


def test_server_prunes_by_retention_without_calling_it_vanished(site, monkeypatch):
    tmp, _share, _ = site
    clock = iter(range(1_800_000_000, 1_900_000_000, 86400))  # a day per reading
    monkeypatch.setattr(backup.time, "time", lambda: float(next(clock)))
    for _ in range(3):
        assert client(site, "create") == 0
    config = json.loads((tmp / "backup-server.json").read_text())
    config["repositories"]["fileserver/shares"]["retention"] = {"daily": 1}
    (tmp / "backup-server.json").write_text(json.dumps(config))
    assert server(site, "maintain") == 0
    assert server(site, "maintain") == 0
    prom = tmp / "metrics" / "kastro_backup_server.prom"
    assert metric(prom, 'kastro_backup_repository_archives{repository="fileserver/shares"}') == 1
    assert (
        metric(prom, 'kastro_backup_repository_archives_vanished{repository="fileserver/shares"}')
        == 0
    )


@pytest.fixture
def traversable():
    """A directory the postgres user can reach (pytest's tmp_path is root's only)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="kastro-pg-", dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@ROOT_ONLY
def test_database_dump_counts_and_drill(traversable, monkeypatch):
    """A database dumped with its counts; rows committed while the dump runs are in neither
    the dump nor the counts (one snapshot); a throwaway server restores the dump and counts
    the same rows, table names that need quoting included."""
    with backup_pg.throwaway_server(traversable / "live") as socket:
        backup_pg._run(["createdb", "-h", socket, "records"])
        psql = backup_pg._psql("records", socket)
        backup_pg._run(
            psql,
            input="CREATE TABLE citizens (id serial primary key, name text);"
            "INSERT INTO citizens (name) SELECT 'πολίτης ' || g FROM generate_series(1, 5000) g;"
            'CREATE TABLE "Odd ""name""" (x int); INSERT INTO "Odd ""name""" VALUES (1), (2);',
        )
        real_run = subprocess.run

        def writes_first(argv, *args, **kwargs):
            if any(str(a).endswith("pg_dump") or a == "pg_dump" for a in argv):
                # Another client commits 100 rows after the snapshot, before pg_dump starts.
                backup_pg._run(psql, input="INSERT INTO citizens (name) "
                               "SELECT 'νέος ' || g FROM generate_series(1, 100) g;")  # fmt: skip
            return real_run(argv, *args, **kwargs)

        monkeypatch.setattr(backup_pg.subprocess, "run", writes_first)
        counted = backup_pg.dump("records", traversable / "records.pgdump", host=socket)
        monkeypatch.setattr(backup_pg.subprocess, "run", real_run)
        assert counted["public.citizens"]["rows"] == 5000
        assert counted['public."Odd ""name"""']["rows"] == 2
        assert backup_pg.stats("records", socket)["public.citizens"]["rows"] == 5100
        with backup_pg.throwaway_server(traversable / "drill") as other:
            backup_pg.restore(traversable / "records.pgdump", "records", other)
            assert backup_pg.answers("records", other)
            assert backup_pg.stats("records", other) == counted


@ROOT_ONLY
def test_a_dataset_with_a_database_drills_it(site, traversable):
    """create dumps the dataset's database beside its files; drill restores both, the
    database into a throwaway server, and finds every table as recorded."""
    tmp, _share, _ = site
    with backup_pg.throwaway_server(traversable / "live") as socket:
        backup_pg._run(["createdb", "-h", socket, "intranet"])
        backup_pg._run(
            backup_pg._psql("intranet", socket),
            input="CREATE TABLE pages (id int, body text);"
            "INSERT INTO pages SELECT g, repeat('x', g % 50) FROM generate_series(1, 2000) g;",
        )
        config = json.loads((tmp / "backup.json").read_text())
        config["state_dir"] = str(traversable / "state")
        config["datasets"]["shares"].update(postgresql=["intranet"], socket_dir=socket)
        (tmp / "backup.json").write_text(json.dumps(config))
        assert client(site, "create") == 0
        assert client(site, "drill") == 0
    prom = tmp / "metrics" / "kastro_backup.prom"
    assert metric(prom, 'kastro_backup_drill_tables{dataset="shares",result="ok"}') == 1
    assert metric(prom, 'kastro_backup_drill_success{dataset="shares"}') == 1


def test_a_missing_path_fails_the_backup_instead_of_an_empty_success(site):
    tmp, share, _ = site
    shutil.rmtree(share)
    assert client(site, "create") == 1
    status = json.loads((tmp / "state" / "status.json").read_text())
    assert "no such path" in status["shares"]["backup"]["error"]
    prom = tmp / "metrics" / "kastro_backup.prom"
    assert metric(prom, 'kastro_backup_success{dataset="shares"}') == 0


def test_a_deletion_during_the_maintenance_is_not_compacted(site, monkeypatch):
    """A client deletes an archive while the server prunes: the server tells its own prunes
    from the deletion (its dry run came first), compacts nothing and reports it."""
    tmp, _, _ = site
    clock, real_time = iter(range(1_800_000_000, 1_900_000_000, 86400)), backup.time.time
    monkeypatch.setattr(backup.time, "time", lambda: float(next(clock)))
    for _ in range(3):
        assert client(site, "create") == 0
    monkeypatch.setattr(backup.time, "time", real_time)
    assert server(site, "maintain") == 0  # retention daily 7: all three kept
    repo = backup.load_config(tmp / "backup.json").datasets["shares"].repository
    victim = backup.archives(repo)[0]["name"]
    real_prune = backup_server.prune

    def prune_while_a_client_deletes(srv, name):
        done = real_prune(srv, name)
        deleted = borg(repo, "delete", f"{repo.location}::{victim}", check=False)
        assert deleted.returncode == 0, deleted.stderr
        return done

    monkeypatch.setattr(backup_server, "prune", prune_while_a_client_deletes)
    assert server(site, "maintain") == 1
    prom = tmp / "metrics" / "kastro_backup_server.prom"
    assert (
        metric(prom, 'kastro_backup_repository_archives_vanished{repository="fileserver/shares"}')
        == 1
    )
    status = json.loads((tmp / "server" / "state" / "status.json").read_text())
    assert status["fileserver/shares"]["vanished"] == [victim]
    assert "nothing compacted" in status["fileserver/shares"]["error"]


def test_a_client_cannot_reach_another_hosts_repositories(site):
    """The forced `borg serve --restrict-to-path ROOT/HOST` refuses any other path, even one
    the client names on the same server (another host's, or the controller's)."""
    tmp, _, _ = site
    assert client(site, "create") == 0
    repo = backup.load_config(tmp / "backup.json").datasets["shares"].repository
    root = repo.location.rsplit("/fileserver/", 1)[0]
    for other in (f"{root}/kastro-controller/controller", f"{root}/intranet/records"):
        proc = borg(repo, "init", "--encryption=repokey-blake2", "--make-parent-dirs", other,
                    check=False)  # fmt: skip
        assert proc.returncode != 0 and "not allowed" in proc.stderr.lower(), proc.stderr
