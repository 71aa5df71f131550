"""The endpoint role on a kernel of its own: the VM plays a gateway of the example
municipality, then a server; the settings are live, the blacklist refuses, drift is repaired,
a second run changes nothing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from kastro.lab import vm
from tests.unit.test_host_clamav import municipal_database

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
# The production settings the issue asks for: root's SSH login refused, admins by key.
ADMIN_VARS = {"base_ssh_permit_root_login": "no"}
# What each VM was last converged to (host and variables): a fixture that needs the state a
# test already left skips its converge (each one takes minutes under emulation).
CONVERGED: dict[str, str] = {}


def converge(machine: vm.Machine, host: str, extra: dict[str, object] | None = None) -> str:
    """base and endpoint (tests/vm/harden.yml) with the VM standing in for `host` of the
    example (with `extra` host variables), reached as the VM's administrator."""
    overlay = machine.directory / "inventory.yml"
    variables = {**machine.inventory(), **ADMIN_VARS, **(extra or {})}
    variables["base_admin_users"] = [
        {"name": vm.ADMIN, "comment": "Kastro tests", "ssh_keys": [machine.image.client_public_key]}
    ]
    overlay.write_text(yaml.safe_dump({"all": {"hosts": {host: variables}}}))
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(EXAMPLE), "-i", str(overlay), "--limit", host,
         "tests/vm/harden.yml"],
        cwd=ROOT, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        timeout=900,
    )  # fmt: skip
    CONVERGED.pop(machine.name, None)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    CONVERGED[machine.name] = yaml.safe_dump([host, extra])
    return proc.stdout


def server_variables(machine: vm.Machine) -> dict[str, object]:
    """The file server with the municipality's signature file (made from Debian's clam.exe
    test program: no public database can be fetched here) given to the role to copy."""
    signatures = municipal_database(machine.directory)
    return {"endpoint_clamav_signature_files": [str(signatures)]}


def converge_server(machine: vm.Machine, extra: dict[str, object] | None = None) -> str:
    return converge(machine, "fileserver", {**server_variables(machine), **(extra or {})})


def ensure_server(machine: vm.Machine) -> None:
    """The VM as converge_server(machine) leaves it, converged only if it is not so already."""
    wanted = yaml.safe_dump(["fileserver", server_variables(machine)])
    if CONVERGED.get(machine.name) != wanted:
        converge_server(machine)


def changed(output: str, host: str) -> int:
    match = re.search(rf"^{re.escape(host)}\s*:.*changed=(\d+)", output, re.MULTILINE)
    assert match, output[-1500:]
    return int(match.group(1))


def sysctl(machine: vm.Machine, key: str) -> str:
    return machine.run("sysctl", "-n", key).stdout.strip()


def test_a_gateway_forwards_and_loads_its_modules(machine):
    assert changed(converge(machine, "cityhall-gw"), "cityhall-gw") > 0
    assert sysctl(machine, "net.ipv4.ip_forward") == "1"
    assert sysctl(machine, "net.ipv6.conf.all.forwarding") == "1"
    assert sysctl(machine, "net.ipv4.conf.all.rp_filter") == "2"
    assert machine.run("modprobe", "wireguard").returncode == 0
    assert machine.run("modprobe", "8021q").returncode == 0
    assert changed(converge(machine, "cityhall-gw"), "cityhall-gw") == 0


def test_a_server_gets_the_strict_profile_live_again_changes_nothing_and_drift_is_repaired(
    machine,
):
    """After the gateway: the profile follows the host's kind both ways."""
    assert changed(converge_server(machine), "fileserver") > 0
    assert sysctl(machine, "net.ipv4.ip_forward") == "0"
    assert sysctl(machine, "kernel.kptr_restrict") == "2"
    assert sysctl(machine, "net.ipv4.conf.all.send_redirects") == "0"
    refused = machine.run("modprobe", "cramfs")
    assert refused.returncode != 0
    assert changed(converge_server(machine), "fileserver") == 0
    assert machine.run("sysctl", "-w", "kernel.sysrq=1").returncode == 0
    assert changed(converge_server(machine), "fileserver") == 1
    assert sysctl(machine, "kernel.sysrq") == "0"
