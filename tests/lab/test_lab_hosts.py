"""`kastro lab` on real podman hosts, and the base role refusing a lockout before any change."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from kastro.lab import hosts

ROOT = Path(__file__).resolve().parents[2]
LAB = "kastro-pytest"

pytestmark = pytest.mark.lab


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        **kwargs,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("inv") / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    school-gw:\n")
    overlay = hosts.up(inventory, LAB)
    yield inventory, overlay
    hosts.down(LAB)


def lab_containers() -> list[str]:
    proc = run(
        "podman", "ps", "-a", "--filter", f"label={hosts.LAB_LABEL}={LAB}", "--format", "json"
    )
    return [row["Names"][0] for row in json.loads(proc.stdout or "[]")]


def sshd_config_digest(container: str) -> str:
    return run("podman", "exec", container, "sha256sum", "/etc/ssh/sshd_config").stdout


def test_up_starts_one_labelled_host_per_inventory_host(lab):
    assert lab_containers() == ["kastro-pytest-school-gw"]
    state = run(
        "podman", "exec", "kastro-pytest-school-gw", "systemctl", "is-system-running", "--wait"
    )
    assert state.stdout.strip() in {"running", "degraded"}


def test_up_twice_is_harmless(lab):
    inventory, _ = lab
    before = run("podman", "inspect", "--format", "{{.Id}}", "kastro-pytest-school-gw").stdout
    hosts.up(inventory, LAB)
    after = run("podman", "inspect", "--format", "{{.Id}}", "kastro-pytest-school-gw").stdout
    assert before == after


def test_base_role_refuses_lockout_before_changing_anything(lab, tmp_path):
    _, overlay = lab
    before = sshd_config_digest("kastro-pytest-school-gw")
    # The playbooks refuse an inventory without a model, so the lab-small model comes along;
    # --limit keeps the run to this lab's host (validation still runs, once). The host is not
    # in that model, so the playbooks (which target kastro_managed) are told to manage it.
    managed = tmp_path / "managed.yml"
    managed.write_text("all:\n  children:\n    kastro_managed:\n      hosts:\n        school-gw:\n")
    proc = run(
        "ansible-playbook",
        "-i",
        str(ROOT / "tests" / "data" / "lab-small"),
        "-i",
        str(overlay),
        "-i",
        str(managed),
        "--limit",
        "school-gw",
        "-e",
        "base_ssh_permit_root_login=no",
        "playbooks/site.yml",
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
    )
    assert proc.returncode != 0
    assert "nobody could log in after this run" in proc.stdout
    assert "changed=0" in proc.stdout
    assert sshd_config_digest("kastro-pytest-school-gw") == before


def test_down_removes_exactly_what_up_created():
    bystander = run(
        "podman",
        "run",
        "-d",
        "--name",
        "kastro-pytest-bystander",
        "localhost/kastro-debian12:latest",
        "sleep",
        "300",
    )
    assert bystander.returncode == 0, bystander.stderr
    try:
        hosts.down(LAB)
        assert lab_containers() == []
        assert run("podman", "container", "exists", "kastro-pytest-bystander").returncode == 0
    finally:
        run("podman", "rm", "-f", "-t", "0", "kastro-pytest-bystander")
