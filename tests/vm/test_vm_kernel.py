"""The VM has what containers lack: a kernel of its own. What the endpoint role's kernel-level
checks need is proved here: sysctl can be written, modules can be loaded and refused,
auditd runs and records, and nothing of it touches this machine's kernel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kastro.lab import vm

pytestmark = pytest.mark.vm


def check(machine: vm.Machine, command: str) -> str:
    proc = machine.run("sh", "-c", command)
    assert proc.returncode == 0, f"{command}: {proc.stderr}"
    return proc.stdout


def test_the_vm_runs_its_own_kernel(machine: vm.Machine) -> None:
    ours = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    theirs = check(machine, "uname -r").strip()
    assert theirs.endswith("cloud-amd64") and theirs != ours


def test_sysctl_is_writable_there_and_not_here(machine: vm.Machine) -> None:
    here = Path("/proc/sys/net/ipv4/conf/all/log_martians")
    before = here.read_text().strip()
    other = "0" if before == "1" else "1"  # whatever this machine has, the VM gets the other
    check(machine, f"sysctl -w net.ipv4.conf.all.log_martians={other}")
    assert check(machine, "sysctl -n net.ipv4.conf.all.log_martians").strip() == other
    assert here.read_text().strip() == before


def test_modules_load_and_a_blacklist_refuses(machine: vm.Machine) -> None:
    check(machine, "modprobe wireguard && grep -q '^wireguard ' /proc/modules")
    check(machine, "echo 'install cramfs /bin/false' > /etc/modprobe.d/kastro-test.conf")
    refused = machine.run("modprobe", "cramfs")
    assert refused.returncode != 0
    check(machine, "rm /etc/modprobe.d/kastro-test.conf")


def test_auditd_runs_and_records_a_watched_write(machine: vm.Machine) -> None:
    check(machine, "systemctl is-active --quiet auditd")  # in the image (kastro.lab.vm)
    # A path no rule of the endpoint role watches (the first matching watch names the record).
    check(machine, "auditctl -w /etc/kastro-vm-probe -p wa -k kastro-shadow")
    check(machine, "touch /etc/kastro-vm-probe")  # a new file: the 'w' of -p wa
    # --input-logs: without it ausearch reads its stdin when that is not a terminal (ssh).
    found = check(
        machine,
        "for i in 1 2 3 4 5; do ausearch --input-logs -k kastro-shadow --raw && break; "
        "sleep 1; done || true",
    )
    assert 'key="kastro-shadow"' in found and "/etc/kastro-vm-probe" in found
