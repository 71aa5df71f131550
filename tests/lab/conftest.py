"""The small lab of real hosts, brought up once per pytest session for every lab test."""

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from kastro.lab import hosts

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "data" / "lab-small"
# Another name lets a developer run the lab tests beside a CI run on the same machine.
LAB = os.environ.get("KASTRO_TEST_LAB", "kastro-net")


def run_playbook(
    playbook: str, *inventories: Path, options: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the repository, on these inventories; its output captured."""
    argv = ["ansible-playbook"]
    for inventory in inventories:
        argv += ["-i", str(inventory)]
    return subprocess.run(
        [*argv, *options, playbook],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def lab():
    """Two buildings, a radio link, a server, a sensor, home and attacker; site.yml converged."""
    hosts.down(LAB)
    overlay = hosts.up(INVENTORY, LAB)
    # The lab's mail server on the monitoring host, where Alertmanager's e-mail lands. First:
    # its setuid exim4 gets its audit rule from the endpoint role in site.yml (installed
    # after, it would be a real change for the next run, which must change nothing).
    mail = run_playbook("molecule/_lab/mail.yml", INVENTORY, overlay)
    assert mail.returncode == 0, mail.stdout[-4000:] + mail.stderr[-2000:]
    proc = run_playbook("playbooks/site.yml", INVENTORY, overlay)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    yield overlay
    hosts.down(LAB)
