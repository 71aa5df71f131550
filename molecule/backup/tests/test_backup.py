"""Backups on real hosts: `files` (a share and the PostgreSQL database `records`) backs up
through hall-gw's firewall to `vault`, whose listener forces `borg serve --append-only`.

The tests build on each other, in file order: backups, a restore to a point in time, a
drill, the ransomware drill (root on `files` encrypts the share and deletes the archives; the
server keeps everything and rolls back), then a corrupted chunk that the next check and the
next drill report. All traffic stays inside the lab.
"""

import os
import re
import subprocess
import time
from pathlib import Path

# Every test takes the `host` fixture, so pytest keeps this file's order (they build on each other).
testinfra_hosts = ["files"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[3]))
LAB = os.environ.get("KASTRO_LAB", "mol-backup")
SSH_CONFIG = PROJECT / ".kastro" / "lab" / LAB / "ssh_config"
OVERLAY = PROJECT / ".kastro" / "lab" / LAB / "inventory.yml"
FILES, VAULT, PORT = "10.60.0.10", "10.60.0.22", 2222  # planned addresses (molecule/_lab/vault)
ROOT = "/srv/kastro-backup"
METRICS = "/var/lib/prometheus/node-exporter"
# What the client's own borg would be told by an attacker with root on it: its key, its
# pinned server and the passphrase (all readable by root there).
AS_CLIENT = (
    "BORG_RSH='ssh -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
    "-o UserKnownHostsFile=/etc/kastro/backup/known_hosts -i /etc/kastro/backup/id_ed25519' "
    "BORG_PASSCOMMAND='cat /etc/kastro/backup/shares.pass' BORG_BASE_DIR=/root/attacker "
)
REPO = f"ssh://kastro-backup@{VAULT}:{PORT}{ROOT}/files/shares"
SHARE_SUMS = "cd /srv/shares && find . -type f -print0 | sort -z | xargs -0 sha256sum"
COUNTS = (
    "runuser -u postgres -- psql -Atq -d {db} -c "
    "\"select (select count(*) from citizens) || ' ' || (select count(*) from permits)\""
)


def on(host: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), host, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(host: str, command: str, timeout: float = 300) -> str:
    proc = on(host, command, timeout)
    assert proc.returncode == 0, f"{host}: {command}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def metric(host: str, name: str, labels: str) -> float:
    text = ok(host, f"cat {METRICS}/kastro_backup{'_server' if 'repository' in name else ''}.prom")
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{labels}}} not in\n{text}")


def archives(repository: str) -> list[str]:
    """The archives of a repository, as the server (its owner) lists them."""
    out = ok(
        "vault",
        "cd /tmp && runuser -u kastro-backup -- env "
        "BORG_BASE_DIR=/var/lib/kastro-backup-server/borg "
        f"BORG_PASSCOMMAND='cat /etc/kastro/backup-server/{repository.split('/')[1]}.pass' "
        f"borg list --short {ROOT}/{repository}",
    )
    return out.split()


STATE: dict[str, str] = {}


def test_the_listener_admits_only_the_backup_clients(host):
    listening = ok("vault", "ss -Hltn")
    assert re.search(rf"\b{re.escape(VAULT)}:{PORT}\b", listening), listening
    assert f"0.0.0.0:{PORT}" not in listening and f"*:{PORT}" not in listening
    # The gateway is not a backup client: the server's host firewall drops it.
    probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{VAULT}/{PORT}' && echo open || echo closed"
    assert ok("hall-gw", probe).strip() == "closed"
    assert ok("files", probe).strip() == "open"
    # The client's key runs borg serve and nothing else (no shell, whatever it asks).
    shell = on(
        "files",
        f"ssh -p {PORT} -o BatchMode=yes -o UserKnownHostsFile=/etc/kastro/backup/known_hosts "
        f"-i /etc/kastro/backup/id_ed25519 kastro-backup@{VAULT} id </dev/null",
        timeout=30,
    )
    assert "uid=" not in shell.stdout, shell.stdout
    # Nor another repository on the same server (the controller's, made later in this file).
    other = f"ssh://kastro-backup@{VAULT}:{PORT}{ROOT}/kastro-controller/controller"
    refused = on("files", f"{AS_CLIENT} borg init -e repokey-blake2 --make-parent-dirs {other}")
    assert refused.returncode != 0 and "not allowed" in refused.stderr.lower(), refused.stderr


def test_the_services_are_sandboxed(host):
    for name, at in (("kastro-backup-sshd", "vault"), ("kastro-backup-maintain", "vault"),
                     ("kastro-backup", "files"), ("kastro-backup-drill", "files")):  # fmt: skip
        out = ok(at, f"systemd-analyze security {name}.service --no-pager | tail -1")
        exposure = float(re.search(r": ([0-9]+\.[0-9]+)", out).group(1))
        print(f"{name}: exposure {exposure}")
        assert exposure <= 5.0, f"{name}: {out}"


def test_backup_then_restore_a_point_in_time(host):
    STATE["sums"] = ok("files", SHARE_SUMS)
    STATE["counts"] = ok("files", COUNTS.format(db="records")).strip()
    assert STATE["counts"] == "5000 200"
    ok("files", "systemctl start kastro-backup.service", timeout=600)
    assert metric("files", "kastro_backup_success", 'dataset="shares"') == 1
    assert metric("files", "kastro_backup_success", 'dataset="records"') == 1
    first = archives("files/shares")
    assert len(first) == 1
    # Change and delete data, back up again.
    ok("files", "echo αλλαγή > /srv/shares/docs/minutes.txt; rm /srv/shares/finance/budget.ods")
    ok("files", "runuser -u postgres -- psql -q -d records -c 'delete from permits where id > 100'")
    time.sleep(1)  # archive names carry the second
    ok("files", "systemctl start kastro-backup.service", timeout=600)
    assert len(archives("files/shares")) == 2
    # The first archive, restored, is the data as it was.
    ok(
        "files",
        f"rm -rf /var/tmp/r1 && kastro-backup restore shares --to /var/tmp/r1 --archive {first[0]}",
    )
    restored = ok("files", SHARE_SUMS.replace("/srv/shares", "/var/tmp/r1/srv/shares"))
    assert restored == STATE["sums"]
    records = archives("files/records")[0]
    ok(
        "files",
        f"rm -rf /var/tmp/r2 && kastro-backup restore records --to /var/tmp/r2 --archive {records}",
    )
    ok("files", "runuser -u postgres -- dropdb --if-exists records_then && "
                "runuser -u postgres -- createdb records_then && "
                "runuser -u postgres -- pg_restore --no-owner -d records_then "
                "< /var/tmp/r2/var/lib/kastro-backup/staging/records/records.pgdump")  # fmt: skip
    assert ok("files", COUNTS.format(db="records_then")).strip() == "5000 200"
    assert ok("files", COUNTS.format(db="records")).strip() == "5000 100"


def test_the_weekly_drill_restores_and_compares(host):
    ok("files", "systemctl start kastro-backup-drill.service", timeout=600)
    assert metric("files", "kastro_backup_drill_success", 'dataset="shares"') == 1
    assert metric("files", "kastro_backup_drill_success", 'dataset="records"') == 1
    assert metric("files", "kastro_backup_drill_files", 'dataset="shares",result="ok"') == 51
    assert metric("files", "kastro_backup_drill_tables", 'dataset="records",result="ok"') == 2
    # Nothing of the drill is left behind (throwaway directory and PostgreSQL server).
    assert (
        ok(
            "files",
            "ls /var/lib/kastro-backup/drill/ 2>/dev/null; ls /var/lib/kastro-backup/drill-pg/",
        ).strip()
        == ""
    )


def kastro(*args: str) -> subprocess.CompletedProcess:
    """The admin's command on the controller, against the lab's inventory and overlay."""
    inventories = ["-i", os.environ["KASTRO_LAB_INVENTORY"], "-i", str(OVERLAY)]
    return subprocess.run(
        ["kastro", *args, *inventories], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_controllers_own_state(host):
    """kastro backup controller: the lab's inventory and the backup secrets, through the
    controller's SSH connection to vault, into an append-only repository of its own."""
    secrets = os.environ["KASTRO_BACKUP_SECRETS"]
    made = kastro("backup", "controller", "--secrets-dir", secrets)
    assert made.returncode == 0 and "create controller" in made.stdout, made.stdout + made.stderr
    assert len(archives("kastro-controller/controller")) == 1
    drilled = kastro("backup", "controller", "--drill", "--secrets-dir", secrets)
    assert drilled.returncode == 0 and "drill controller" in drilled.stdout, drilled.stdout
    status = kastro("backup", "status")
    assert re.search(
        r"controller\s+kastro-controller\s+\d{4}-.* ok\s+\d{4}-.* ok", status.stdout
    ), status.stdout
    # The controller's key is only for the relay through the server: from files it is refused.
    key = Path(secrets) / "clients" / "kastro-controller"
    ok("files", f"umask 077; cat > /root/controller-key <<'EOF'\n{key.read_text()}EOF")
    refused = on(
        "files",
        f"ssh -p {PORT} -o BatchMode=yes -o UserKnownHostsFile=/etc/kastro/backup/known_hosts "
        f"-i /root/controller-key kastro-backup@{VAULT} borg serve </dev/null",
        timeout=30,
    )
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused.stderr


def test_the_admins_commands(host):
    """kastro backup status / drill / restore from the controller, over SSH as Ansible goes."""
    before = kastro("backup", "status")  # the server has not maintained anything yet
    assert "files/records: not maintained yet" in before.stdout, before.stdout
    ok("vault", "systemctl start kastro-backup-maintain.service", timeout=600)
    status = kastro("backup", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(r"shares\s+files\s+\d{4}-\d\d-\d\d .* ok\s+\d{4}-", status.stdout), (
        status.stdout
    )
    assert "files/records: 2 archives, 0 vanished, check ok" in status.stdout
    listed = kastro("backup", "list", "shares")
    assert listed.returncode == 0 and listed.stdout.count("shares-") == 2, listed.stdout
    drill = kastro("backup", "drill", "records")
    assert drill.returncode == 0 and "drill records" in drill.stdout, drill.stdout + drill.stderr
    restored = kastro("backup", "restore", "records", "--to", "/var/tmp/r4")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert ok("files", "ls /var/tmp/r4/var/lib/kastro-backup/staging/records/").split() == [
        "manifest.json",
        "records.pgdump",
    ]
    # Bad input: named and refused before anything runs on a host.
    unknown = kastro("backup", "restore", "payroll", "--to", "/var/tmp/r5")
    assert (
        unknown.returncode != 0
        and "payroll" in unknown.stderr
        and "records, shares" in unknown.stderr
    )
    relative = kastro("backup", "restore", "shares", "--to", "var/tmp/r5")
    assert relative.returncode != 0 and "--to var/tmp/r5" in relative.stderr


def test_ransomware_cannot_remove_history(host):
    ok("vault", "systemctl start kastro-backup-maintain.service", timeout=600)
    assert metric("vault", "kastro_backup_repository_archives", 'repository="files/shares"') == 2
    STATE["before_attack"] = ok("vault", "date -u +%Y-%m-%dT%H:%M:%S").strip()
    time.sleep(1)
    # Root on the client: encrypt the share, then try to destroy the history with its key.
    encrypt = 'openssl enc -aes-256-cbc -pbkdf2 -pass pass:x -in "$1" -out "$1.locked"'
    ok("files", f"find /srv/shares -type f -exec sh -c '{encrypt} && rm \"$1\"' _ {{}} \\;")
    ok("files", f"{AS_CLIENT} borg delete --glob-archives '*' {REPO}")
    ok("files", f"{AS_CLIENT} borg prune --keep-last 1 {REPO}")
    gone = on("files", f"{AS_CLIENT} BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=YES borg delete {REPO}")
    assert gone.returncode != 0 and "append-only" in gone.stderr, gone.stderr
    # To the client the history is gone; the server sees archives vanish and compacts nothing.
    assert on("vault", "systemctl start kastro-backup-maintain.service").returncode != 0
    assert (
        metric("vault", "kastro_backup_repository_archives_vanished", 'repository="files/shares"')
        == 2
    )
    # The server's owner rolls the repository back; the client forgets what it was shown.
    ok(
        "vault",
        "runuser -u kastro-backup -- kastro-backup-server recover files/shares "
        f"--before {STATE['before_attack']}",
    )
    ok("files", "kastro-backup forget shares")
    ok("files", "rm -rf /var/tmp/r3 && kastro-backup restore shares --to /var/tmp/r3")
    # The last good archive restores 100 %: the share as it was after the second backup.
    latest = ok("files", SHARE_SUMS.replace("/srv/shares", "/var/tmp/r3/srv/shares"))
    assert "budget.ods" not in latest and "minutes.txt" in latest
    assert len(latest.splitlines()) == len(STATE["sums"].splitlines()) - 1
    ok("vault", "systemctl start kastro-backup-maintain.service", timeout=600)
    assert (
        metric("vault", "kastro_backup_repository_archives_vanished", 'repository="files/shares"')
        == 0
    )


def test_a_corrupt_chunk_is_reported_by_the_check_and_the_drill(host):
    """One flipped byte fails the next repository check; damage to the latest archive fails
    the next drill (each a metric an alert fires on: tests/promtool)."""
    # The biggest segment of the shares repository gets one flipped byte.
    ok("vault", f"""python3 - <<'EOF'
from pathlib import Path
data = Path("{ROOT}/files/shares/data")
segment = max((p for p in data.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
raw = bytearray(segment.read_bytes())
raw[len(raw) // 2] ^= 0xFF
segment.write_bytes(bytes(raw))
EOF""")  # fmt: skip
    # Make the check due now (it runs every check_days), as the repositories' owner does.
    ok("vault", """python3 - <<'EOF'
import json
from pathlib import Path
path = Path("/var/lib/kastro-backup-server/status.json")
status = json.loads(path.read_text())
status["files/shares"]["check_last_success"] = 0
path.write_text(json.dumps(status))
EOF""")  # fmt: skip
    assert on("vault", "systemctl start kastro-backup-maintain.service").returncode != 0
    assert (
        metric("vault", "kastro_backup_repository_check_success", 'repository="files/shares"') == 0
    )
    assert (
        metric("vault", "kastro_backup_repository_check_success", 'repository="files/records"') == 1
    )
    # Every segment damaged: the latest archive's own chunks too, so its drill cannot pass.
    ok("vault", f"""python3 - <<'EOF'
from pathlib import Path
for segment in Path("{ROOT}/files/shares/data").rglob("*"):
    if segment.is_file() and segment.stat().st_size > 64:
        raw = bytearray(segment.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        segment.write_bytes(bytes(raw))
EOF""")  # fmt: skip
    assert on("files", "systemctl start kastro-backup-drill.service", timeout=600).returncode != 0
    assert metric("files", "kastro_backup_drill_success", 'dataset="shares"') == 0
    assert metric("files", "kastro_backup_drill_success", 'dataset="records"') == 1
