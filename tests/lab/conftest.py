"""The small lab of real hosts, brought up once per pytest session for every lab test."""

import os
import subprocess
from pathlib import Path

import pytest

from kastro.lab import hosts

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "data" / "lab-small"
# Another name lets a developer run the lab tests beside a CI run on the same machine.
LAB = os.environ.get("KASTRO_TEST_LAB", "kastro-net")


@pytest.fixture(scope="session")
def lab():
    """Two buildings, a radio link, a server, a sensor, home and attacker; site.yml converged."""
    hosts.down(LAB)
    overlay = hosts.up(INVENTORY, LAB)
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), "-i", str(overlay), "playbooks/site.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # The lab's mail server on the monitoring host, where Alertmanager's e-mail lands.
    mail = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), "-i", str(overlay), "molecule/_lab/mail.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
        stdin=subprocess.DEVNULL,
    )
    assert mail.returncode == 0, mail.stdout[-4000:] + mail.stderr[-2000:]
    yield overlay
    hosts.down(LAB)
