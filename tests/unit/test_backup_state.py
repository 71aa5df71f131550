"""What the backup roles write, compiled from the example and the backup lab, and the
controller's secrets for them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kastro.backup import credentials
from kastro.backup.state import (
    BackupModelError,
    authorized_keys,
    client_state,
    clients,
    controller_config,
    known_hosts,
    server_state,
)
from kastro.controller.model_vars import model_variables

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = model_variables(ROOT / "inventory" / "example")
LAB = model_variables(ROOT / "molecule" / "_lab" / "vault")


def test_a_client_gets_its_datasets_and_repositories_on_the_planned_server():
    state = client_state(EXAMPLE, "fileserver")
    assert state["enabled"] and state["datasets"] == ["shares"]
    shares = state["config"]["datasets"]["shares"]
    vault = EXAMPLE["kastro_plan"]["hosts"]["vault"]["ipv4"]
    assert (
        shares["repository"]
        == f"ssh://kastro-backup@{vault}:2222/srv/kastro-backup/fileserver/shares"
    )
    assert shares["paths"] == ["/srv/shares"] and shares["rpo_seconds"] == 26 * 3600
    assert not client_state(EXAMPLE, "intranet")["enabled"]  # no dataset there


def test_the_server_gets_every_repository_and_only_the_server():
    state = server_state(LAB, "vault")
    assert sorted(state["config"]["repositories"]) == [
        "files/records", "files/shares", "kastro-controller/controller",
    ]  # fmt: skip
    assert state["config"]["repositories"]["files/shares"]["retention"] == {
        "within_days": 2, "daily": 7, "weekly": 4,
    }  # fmt: skip
    assert not server_state(LAB, "files")["enabled"]
    assert clients(LAB) == {"files": ["records", "shares"], "kastro-controller": ["controller"]}


def test_authorized_keys_force_append_only_below_each_clients_own_directory(tmp_path):
    made = credentials.ensure(tmp_path, "vault", ["files", "kastro-controller"], ["shares"])
    assert made["changed"] and "clients/files" in made["made"]
    text = authorized_keys(server_state(LAB, "vault"), str(tmp_path))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    files_line = next(line for line in lines if line.endswith("kastro-backup@files"))
    assert files_line.startswith(
        'restrict,from="10.60.0.10,fd4b:6000:6000:1::a",command="borg serve --append-only '
        '--restrict-to-path /srv/kastro-backup/files --umask 077" ssh-ed25519 '
    )
    # The controller relays through the server: its key is accepted from the server only.
    controller = next(line for line in lines if "kastro-controller" in line)
    assert 'from="10.60.0.22,fd4b:6000:6000::6"' in controller
    assert "--restrict-to-path /srv/kastro-backup/kastro-controller " in controller


def test_secrets_are_private_and_made_once(tmp_path):
    first = credentials.ensure(tmp_path, "vault", ["files"], ["shares", "records"])
    assert sorted(first["made"]) == [
        "clients/files", "datasets/records.pass", "datasets/shares.pass", "host_key",
    ]  # fmt: skip
    for path in [
        tmp_path / "host_key",
        tmp_path / "clients" / "files",
        *tmp_path.glob("datasets/*"),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert credentials.ensure(tmp_path, "vault", ["files"], ["shares", "records"])["made"] == []
    with pytest.raises(credentials.BackupCredentialsError):
        credentials.ensure(tmp_path, "vault", ["-oProxyCommand=x"], [])


def test_a_damaged_public_key_is_refused_not_written(tmp_path):
    credentials.ensure(tmp_path, "vault", ["files", "kastro-controller"], [])
    (tmp_path / "clients" / "files.pub").write_text('ssh-ed25519 AAAA" command="sh\n')
    with pytest.raises(BackupModelError, match="not an Ed25519 public key"):
        authorized_keys(server_state(LAB, "vault"), str(tmp_path))
    with pytest.raises(BackupModelError, match="backup_credentials role makes it"):
        known_hosts(client_state(LAB, "files"), str(tmp_path / "missing"))


def test_the_controllers_configuration():
    config = controller_config(LAB, "/root/s/backup", "/root/.kastro/backup/x", ["/inv"])
    dataset = config["datasets"]["controller"]
    assert dataset["repository"] == (
        "ssh://kastro-backup@10.60.0.22:2222/srv/kastro-backup/kastro-controller/controller"
    )
    assert (
        dataset["paths"] == ["/inv"]
        and config["ssh_key"] == "/root/s/backup/clients/kastro-controller"
    )
    without = {**EXAMPLE, "kastro_backup": {**EXAMPLE["kastro_backup"], "controller": None}}
    with pytest.raises(BackupModelError, match=r"kastro_backup\.controller is not set"):
        controller_config(without, "/s", "/t", [])
