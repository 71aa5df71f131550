"""SSH brute force, measured from the attacker's side: the example file server's compiled
ruleset (with SSH opened to a contractor's network, the only way a non-management source
reaches SSH at all) in a network namespace with a real sshd; a real ssh client loop from
the attacker's namespace. The source must be blocked within 3 s of crossing the rate (p95
over the trials), every port of the host then dropped for it, and an allowlisted source
making as many connections never blocked."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kastro.controller.state import host_state
from kastro.firewall.ruleset import compile_ruleset
from kastro.inventory.project import plan_inventory
from tests.unit.test_firewall_ruleset import render

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("sshd") is None,
        reason="needs root, nft and sshd",
    ),
]
ROOT = Path(__file__).resolve().parents[2]
HOST, ATTACKER = "10.99.0.1", "10.99.0.2"
ADMIN_HOST, ADMIN = "10.99.1.1", "10.99.1.2"  # the allowlisted source (the SOC, say)
BURST = 3
TRIALS = 5


def ruleset_text() -> str:
    inventory = ROOT / "inventory" / "example"
    plan = plan_inventory(inventory).result.data
    variables: dict = {"kastro_plan": plan}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    state = host_state(variables, "fileserver")["firewall"]
    settings = {
        **state,
        "management_ports": [22],
        "allowlist": ["10.99.1.0/24"],
        "input_allow": [
            {
                "name": "ssh-contractor",
                "ports": ["tcp/22"],
                "sources": ["10.99.0.0/24", "10.99.1.0/24"],
            }
        ],
        "ssh_guard_rate": "2/minute",
        "ssh_guard_burst": BURST,
        "ssh_guard_block": "10m",
    }
    return render(compile_ruleset("fileserver", variables, settings))


def sh(netns: str, *argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, **kwargs
    )


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    host, attacker = f"kastro-sg-h-{tag}", f"kastro-sg-a-{tag}"
    for name in (host, attacker):
        subprocess.run(["ip", "netns", "add", name], check=True)
    sshd = None
    try:
        subprocess.run(["ip", "link", "add", f"sg{tag}h", "netns", host, "type", "veth",
                        "peer", "name", f"sg{tag}a", "netns", attacker], check=True)  # fmt: skip
        for name, iface, addresses in (
            (host, f"sg{tag}h", (f"{HOST}/24", f"{ADMIN_HOST}/24")),
            (attacker, f"sg{tag}a", (f"{ATTACKER}/24", f"{ADMIN}/24")),
        ):
            for address in addresses:
                sh(name, "ip", "addr", "add", address, "dev", iface, check=True)
            sh(name, "ip", "link", "set", iface, "up", check=True)
            sh(name, "ip", "link", "set", "lo", "up", check=True)
        sh(host, "nft", "-f", "-", input=ruleset_text(), check=True)
        key = tmp_path / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        config = tmp_path / "sshd_config"
        config.write_text(
            f"HostKey {key}\nListenAddress {HOST}\nListenAddress {ADMIN_HOST}\n"
            f"PidFile {tmp_path}/sshd.pid\nPasswordAuthentication no\nUsePAM no\n"
            "MaxStartups 100\n"
        )
        # sshd's privilege separation directory: absent where sshd never ran as a service.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        sshd = subprocess.Popen(["ip", "netns", "exec", host, "/usr/sbin/sshd", "-D", "-e",
                                 "-f", str(config)], stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)
        yield host, attacker
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)
        for name in (host, attacker):
            subprocess.run(["ip", "netns", "del", name], check=False)


def attempt(attacker: str, source: str, target: str) -> bool:
    """One real SSH login attempt (no key the server accepts); True when sshd answered."""
    done = sh(
        attacker, "ssh", "-b", source, "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        f"nobody@{target}", "true", timeout=10,
    )  # fmt: skip
    return "Permission denied" in done.stderr


def guarded(host: str) -> str:
    return sh(host, "nft", "list", "set", "inet", "kastro", "ssh_guarded_v4").stdout


def test_a_brute_forcing_source_is_blocked_within_3_s_and_the_allowlist_never(pair):
    host, attacker = pair
    for _ in range(BURST + 3):  # the allowlisted source, as often: always answered
        assert attempt(attacker, ADMIN, ADMIN_HOST)
    assert ADMIN not in guarded(host)

    delays = []
    for trial in range(TRIALS):
        sh(host, "nft", "flush", "set", "inet", "kastro", "ssh_guarded_v4", check=True)
        sh(host, "nft", "flush", "set", "inet", "kastro", "ssh_meter_v4", check=True)
        answered = 0
        delay = None
        for _ in range(BURST + 5):  # bounded: stops by itself
            # The attempt runs while the set is watched: the delay is from its first packet
            # to the source being in ssh_guarded_v4, not the client's own timeout.
            started = time.monotonic()
            client = subprocess.Popen(
                ["ip", "netns", "exec", attacker, "ssh", "-b", ATTACKER, "-o", "BatchMode=yes",
                 "-o", "ConnectTimeout=2", "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", f"nobody@{HOST}", "true"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            while client.poll() is None and delay is None:
                if ATTACKER in guarded(host):
                    delay = time.monotonic() - started
                time.sleep(0.02)
            _, stderr = client.communicate(timeout=10)
            if delay is None and ATTACKER in guarded(host):
                delay = time.monotonic() - started
            if delay is not None:
                break
            assert "Permission denied" in stderr, stderr
            answered += 1
        assert delay is not None, f"trial {trial}: never blocked"
        assert answered == BURST, f"trial {trial}: {answered} attempts reached sshd"
        delays.append(delay)
        # Blocked on every port, not only SSH: the host's ping answer stops too.
        assert sh(attacker, "ping", "-c", "1", "-W", "1", "-I", ATTACKER, HOST).returncode != 0
    delays.sort()
    p95 = delays[min(len(delays) - 1, round(0.95 * len(delays)) - 1)]
    print(f"\nSSH brute force blocked after {[round(d, 2) for d in delays]} s (p95 {p95:.2f} s)")
    assert p95 <= 3.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ssh_guard_rate", "5/minute accept"),
        ("ssh_guard_rate", "5/minute\nadd rule inet kastro input accept"),
        ("ssh_guard_block", "1h; flush ruleset"),
        ("ssh_guard_burst", 0),
        ("echo_rate", "20/second counter accept"),
        ("log_rate", '10/minute log prefix "x"'),
    ],
)
def test_values_spliced_into_the_ruleset_are_checked(name: str, value: object) -> None:
    from kastro.firewall.ruleset import FirewallConfigError, Settings

    with pytest.raises(FirewallConfigError, match=f"firewall_{name}"):
        Settings.from_vars({name: value})
