"""A broken inventory never reaches a host: site.yml stops in its validation play."""

import subprocess
from pathlib import Path

import pytest

from kastro.lab import hosts
from tests.inventory_helpers import BROKEN_CASES, broken_copy, load_case
from tests.lab.conftest import run_playbook

LAB = "kastro-broken"
HOST = "cityhall-gw"  # a host every broken case still declares
pytestmark = pytest.mark.lab
# Every case is checked against the validator in tests/unit/test_broken_inventories.py; here
# the playbook's stop is proved once per stage a mistake is caught at (each run of site.yml
# costs ~5 s of CI): Ansible's YAML parser, the schema, the network plan, buildings and links,
# policies, teleworkers and their keys, the model's variables, the stored plan, and values
# that would reach a host's files (line breaks).
STAGES = (
    "01-yaml-syntax-error",
    "03-typo-in-field-name",
    "04-supernet-prefix-too-long",
    "17-duplicate-host-name",
    "21-building-without-gateway",
    "32-radio-link-unencrypted",
    "37-policy-unknown-service",
    "43-wireguard-key-not-base64",
    "47-teleworker-unknown-state",
    "52-unknown-model-variable",
    "55-plan-out-of-date",
    "58-teleworker-id-with-trailing-newline",
    "61-description-with-a-line-break",
)
CASES = [p for p in BROKEN_CASES if p.stem in STAGES]


@pytest.fixture(scope="module")
def lab_host(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("single") / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    {HOST}:\n")
    overlay = hosts.up(inventory, LAB)
    yield overlay
    hosts.down(LAB)


def host_state(container: str) -> str:
    """Fingerprint of what the base role would change first or at all."""
    proc = subprocess.run(
        [
            "podman",
            "exec",
            container,
            "sh",
            "-c",
            "sha256sum /etc/ssh/sshd_config /etc/hosts; ls -l /etc/localtime; "
            "ls /var/lib/apt/lists | wc -l; getent group kastro-admins || true",
        ],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return proc.stdout


def test_every_stage_names_a_real_case():
    assert len(CASES) == len(STAGES)


@pytest.mark.parametrize("case_file", CASES, ids=lambda p: p.stem)
def test_site_playbook_stops_before_any_change(case_file: Path, tmp_path: Path, lab_host: Path):
    inventory = broken_copy(load_case(case_file), tmp_path / "inv")
    container = hosts.container_name(LAB, HOST)
    before = host_state(container)
    proc = run_playbook("playbooks/site.yml", inventory, lab_host)
    assert proc.returncode != 0
    # Either Ansible itself refused the files (YAML errors) or the validation play (run on
    # the controller, delegated) failed; in both cases nothing ran on a managed host.
    assert "Gathering Facts" not in proc.stdout
    recap = proc.stdout.partition("PLAY RECAP")[2]
    assert "changed=0" in recap or HOST not in recap
    assert "TASK [base" not in proc.stdout
    assert host_state(container) == before


@pytest.mark.parametrize("form", ["file", "limit"])
def test_a_file_source_or_a_limit_does_not_skip_validation(form: str, tmp_path: Path, lab_host):
    """-i inventory/x/kastro_hosts.yml loads the group_vars beside it; --limit HOST used to skip the
    localhost validation play. Either way a bad model must stop the run."""
    case = load_case(next(p for p in BROKEN_CASES if "supernet-prefix-too-long" in p.name))
    inventory = broken_copy(case, tmp_path / "inv")
    source = inventory / "kastro_hosts.yml" if form == "file" else inventory
    limit = ["--limit", HOST] if form == "limit" else []
    container = hosts.container_name(LAB, HOST)
    before = host_state(container)
    proc = run_playbook("playbooks/site.yml", source, lab_host, options=limit)
    assert proc.returncode != 0
    assert "is not a valid CIDR network" in proc.stdout + proc.stderr
    assert "TASK [base" not in proc.stdout
    assert host_state(container) == before
