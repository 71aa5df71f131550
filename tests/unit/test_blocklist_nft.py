"""kastro-firewall block/unblock against the real nft, in a network namespace of its own:
repeated blocks extend and never shorten, networks replace the entries inside them, an
address inside a blocked network is reported as covered, the allowlist is never blocked;
isolations live in their own sets, and a host is not isolated from the session asking."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft"
    ),
]

TABLE = """
table inet kastro {
    set allowlist_v4 { type ipv4_addr; flags interval; elements = { 10.20.3.0/24 } }
    set allowlist_v6 { type ipv6_addr; flags interval; }
    set blocklist_v4 { type ipv4_addr; flags interval, timeout; }
    set blocklist_v6 { type ipv6_addr; flags interval, timeout; }
    set isolated_v4 { type ipv4_addr; flags interval, timeout; }
    set isolated_v6 { type ipv6_addr; flags interval, timeout; }
}
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kastro-bl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"], input=TABLE, text=True, check=True
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(f"/tmp/{name}-var-lib", ignore_errors=True)


def helper(
    netns: str, *args: str, ssh_from: str | None = None, ssh_to: str = "10.30.0.42"
) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    if ssh_from:
        env["SSH_CONNECTION"] = f"{ssh_from} 50022 {ssh_to} 22"
    # A mount namespace of its own with a directory over /var/lib: what kastro-firewall saves
    # for a reboot (/var/lib/kastro/firewall) stays out of this machine's.
    var_lib = Path(f"/tmp/{netns}-var-lib")
    var_lib.mkdir(exist_ok=True)
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$0" /var/lib && exec "$@"',
            str(var_lib),
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "kastro.host.firewall",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env=env,
    )
    return proc.returncode, json.loads(proc.stdout) if proc.returncode == 0 else {
        "error": proc.stderr
    }


def elements(result: dict) -> dict[str, int | None]:
    return {e["val"]: e.get("expires") for e in result["elements"]}


def test_a_repeated_block_extends_and_never_shortens(netns: str) -> None:
    rc, first = helper(netns, "block", "198.51.100.7", "--timeout", "1m")
    assert rc == 0 and 55 <= elements(first)["198.51.100.7"] <= 60
    rc, again = helper(netns, "block", "198.51.100.7", "--timeout", "1h")
    assert rc == 0 and again["extended"] and 3590 <= elements(again)["198.51.100.7"] <= 3600
    rc, shorter = helper(netns, "block", "198.51.100.7", "--timeout", "30m")
    assert rc == 0 and elements(shorter)["198.51.100.7"] >= 3580  # the hour stays


def test_a_network_replaces_the_addresses_inside_it(netns: str) -> None:
    helper(netns, "block", "203.0.113.9", "--timeout", "2h")
    rc, wide = helper(netns, "block", "203.0.113.0/24", "--timeout", "30m")
    assert rc == 0, wide
    assert wide["replaced"] == ["203.0.113.9"]
    assert list(elements(wide)) == ["203.0.113.0/24"]
    assert elements(wide)["203.0.113.0/24"] >= 7150  # the address's two hours are kept
    rc, inside = helper(netns, "block", "203.0.113.77", "--timeout", "1h")
    assert rc == 0 and inside["covered_by"] == "203.0.113.0/24"
    assert list(elements(inside)) == ["203.0.113.0/24"]


def test_unblock_says_when_an_address_is_blocked_as_part_of_a_network(netns: str) -> None:
    helper(netns, "block", "203.0.113.0/24", "--timeout", "1h")
    rc, inside = helper(netns, "unblock", "203.0.113.9")
    assert rc == 0 and inside["unblocked"] is None and inside["inside"] == ["203.0.113.0/24"]
    rc, done = helper(netns, "unblock", "203.0.113.0/24")
    assert rc == 0 and done["unblocked"] == "203.0.113.0/24" and done["elements"] == []


def test_a_permanent_block_stays_permanent(netns: str) -> None:
    helper(netns, "block", "192.0.2.10")
    rc, timed = helper(netns, "block", "192.0.2.10", "--timeout", "1h")
    assert rc == 0 and elements(timed)["192.0.2.10"] is None


def test_ipv6_networks_and_the_allowlist(netns: str) -> None:
    rc, v6 = helper(netns, "block", "2001:db8:66::/48", "--timeout", "1h")
    assert rc == 0 and list(elements(v6)) == ["2001:db8:66::/48"]
    for protected in ("10.20.3.5", "10.20.0.0/16"):
        rc, refused = helper(netns, "block", protected, "--timeout", "1h")
        assert rc == 1 and "allowlist" in refused["error"]
    rc, listing = helper(netns, "blocked")
    assert rc == 0 and listing["blocklist_v4"] == []


def test_isolations_are_kept_apart_from_blocks(netns: str) -> None:
    rc, isolated = helper(netns, "isolate", "10.30.0.42")
    assert rc == 0 and isolated["set"] == "isolated_v4", isolated
    assert elements(isolated) == {"10.30.0.42": None}  # until released
    rc, listing = helper(netns, "blocked")
    assert listing["blocklist_v4"] == [] and listing["isolated_v4"][0]["val"] == "10.30.0.42"
    rc, refused = helper(netns, "isolate", "10.20.3.7")
    assert rc == 1 and "allowlist" in refused["error"]
    rc, released = helper(netns, "release", "10.30.0.42")
    assert rc == 0 and released["unblocked"] == "10.30.0.42" and released["elements"] == []


def test_a_host_is_not_isolated_from_the_session_that_asks(netns: str) -> None:
    rc, refused = helper(netns, "isolate", "10.30.0.42", ssh_from="192.0.2.50")
    assert rc == 1 and "cut this SSH session" in refused["error"], refused
    rc, listing = helper(netns, "blocked")
    assert listing["isolated_v4"] == []
    # The session arrives on another address (a management interface): not cut.
    rc, other = helper(netns, "isolate", "10.30.0.42", ssh_from="192.0.2.50", ssh_to="10.89.0.5")
    assert rc == 0 and list(elements(other)) == ["10.30.0.42"]
    helper(netns, "release", "10.30.0.42")
    rc, done = helper(netns, "isolate", "10.30.0.42", ssh_from="10.20.3.5")  # management
    assert rc == 0 and list(elements(done)) == ["10.30.0.42"]


def test_what_a_reboot_needs_is_saved_privately(netns: str) -> None:
    helper(netns, "block", "203.0.113.9", "--timeout", "1h")
    helper(netns, "isolate", "10.30.0.42")
    saved = Path(f"/tmp/{netns}-var-lib/kastro/firewall/soc-sets.json")
    assert saved.stat().st_mode & 0o777 == 0o600
    data = json.loads(saved.read_text())
    assert [e["val"] for e in data["blocklist_v4"]] == ["203.0.113.9"]
    assert data["isolated_v4"] == [{"val": "10.30.0.42", "until": None}]
    helper(netns, "unblock", "203.0.113.9")
    assert json.loads(saved.read_text())["blocklist_v4"] == []
