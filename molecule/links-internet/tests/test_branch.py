"""A village office over the public internet, with real tunnels, NAT and OSPF.

The lab (molecule/_lab/branch): hall (the town hall, a fixed public address on the lab's
internet segment) - kep over fibre; farm (the village office) joins kep by radio and the hall
by a WireGuard tunnel over the internet. farm's 4G uplink has no fixed address: it sits behind
the lab's ISP NAT (100.64.0.0/10 inside, the NAT's own address outside), so the hall can never
open a connection to it and only learns where it is from its packets. Measured figures are
printed (the verifier runs pytest with -s). All traffic stays inside the lab's own networks.
"""

import itertools
import json
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

testinfra_hosts = ["hall-gw"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[3]))
LAB = os.environ.get("KASTRO_LAB", "mol-branch")
MUNICIPALITY = Path(os.environ["KASTRO_LAB_INVENTORY"])
SSH_CONFIG = PROJECT / ".kastro" / "lab" / LAB / "ssh_config"
PLAN = yaml.safe_load((MUNICIPALITY / "group_vars" / "all" / "kastro_plan.yml").read_text())[
    "kastro_plan"
]
SERVER = PLAN["hosts"]["srv-hall"]
HUB_PUBLIC = "198.51.100.1"
NAT_PUBLIC = "198.51.100.30"  # the lab ISP NAT's own address (kastro.lab.hosts.ISP_NAT_OFFSET)
# OSPF's dead interval and SPF delay (roles/links defaults), a hello of jitter, one second for
# the kernel route: what a failover may take (as in the links scenario).
FAILOVER_BOUND = 3.0 + 0.05 + 1.0 + 1.0


def on(host: str, command: str, timeout: float = 60):
    return subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), host, command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def link_of(gateway: str, name: str) -> dict:
    config = json.loads(on(gateway, "cat /etc/kastro/links.json").stdout)
    return next(link for link in config["links"] if link["name"] == name)


def full(gateway: str, family: str = "ipv4") -> set[str]:
    rows = json.loads(on(gateway, f"kastro-links neighbors --family {family}").stdout or "[]")
    return {r["interface"] for r in rows or [] if r["state"] == "Full"}


def wait_full(gateway: str, interface: str, family: str = "ipv4", timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if interface in full(gateway, family):
            return True
        time.sleep(1)
    return False


def test_the_branch_dials_the_hubs_public_address_and_the_hub_never_needs_the_branchs(host):
    farm = link_of("farm-gw", "farm-hall")
    hall = link_of("hall-gw", "farm-hall")
    assert farm["wireguard"]["peer_endpoint"] == f"{HUB_PUBLIC}:{farm['wireguard']['port']}"
    assert "peer_endpoint" not in hall["wireguard"]
    hub_settings = host.file(f"/etc/kastro/links/{hall['interface']}.conf").content_string
    assert "Endpoint" not in hub_settings
    assert wait_full("hall-gw", hall["interface"])
    # What the hub saw: the NAT's address, never the branch's own (100.64.x.y).
    endpoints = on("hall-gw", f"wg show {hall['interface']} endpoints").stdout
    print("\nthe hub sees the branch at:", endpoints.strip())
    assert re.search(rf"\s{re.escape(NAT_PUBLIC)}:\d+$", endpoints.strip()), endpoints


def test_ospf_runs_over_the_tunnel_in_both_families(host):
    for family in ("ipv4", "ipv6"):
        assert wait_full("farm-gw", link_of("farm-gw", "farm-hall")["interface"], family), family


def test_the_radio_is_preferred_while_it_is_up(host):
    radio = link_of("farm-gw", "kep-farm")
    assert wait_full("farm-gw", radio["interface"])
    route = on("farm-gw", f"ip route get {SERVER['ipv4']}").stdout
    assert f"dev {radio['interface']}" in route, route


def test_the_branch_reaches_the_town_hall_as_the_policy_allows(host):
    ping = on("pc-farm", f"ping -n -c 3 -i 0.2 -W 1 {SERVER['ipv4']}").stdout
    assert " 0% packet loss" in ping, ping
    fetch = "import urllib.request as u; print(u.urlopen('http://{}/', timeout=5).status)"
    web = on("pc-farm", f'python3 -c "{fetch.format(SERVER["ipv4"])}"').stdout.strip()
    assert web == "200"
    # ssh from staff to the servers is not in the policy: refused at the gateways.
    ssh = on("pc-farm", f"timeout 5 bash -c '</dev/tcp/{SERVER['ipv4']}/22' && echo open")
    assert "open" not in ssh.stdout


def _outage(target: str, cut: str, restore: str) -> tuple[float, str]:
    """pc-farm pings `target` 20 times a second for 16 s; 3 s in, farm-gw runs `cut`. The
    longest gap in the answers, and farm-gw's route to the target then."""
    interval = 0.05
    on("pc-farm", f"rm -f /tmp/ping.txt; (ping -n -O -i {interval} -w 16 {target} "
                  "> /tmp/ping.txt 2>&1 &)")  # fmt: skip
    time.sleep(3)
    assert on("farm-gw", cut).returncode == 0
    time.sleep(14)
    route = on("farm-gw", f"ip route get {target}").stdout
    on("farm-gw", restore)
    pings = on("pc-farm", "cat /tmp/ping.txt").stdout
    answered = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+) ttl", pings)})
    assert answered
    gaps = [b - a - 1 for a, b in itertools.pairwise(answered)]
    return max(gaps, default=0) * interval, route


def test_when_the_radio_fades_the_internet_tunnel_carries_the_traffic_and_gives_it_back(host):
    radio = link_of("farm-gw", "kep-farm")
    tunnel = link_of("farm-gw", "farm-hall")
    underlay = radio["underlay"]
    cut = (
        "nft add table inet labcut; "
        "nft add chain inet labcut in '{ type filter hook input priority -300; }'; "
        "nft add chain inet labcut out '{ type filter hook output priority -300; }'; "
        f"nft add rule inet labcut in iifname {underlay} drop; "
        f"nft add rule inet labcut out oifname {underlay} drop"
    )
    outage, detour = _outage(SERVER["ipv4"], cut, "nft delete table inet labcut")
    print(
        f"\nradio kep-farm silent: pc-farm -> srv-hall stopped for {outage:.2f} s (bound "
        f"{FAILOVER_BOUND:.2f} s); path then: {detour.split(' uid')[0].strip()}"
    )
    assert f"dev {tunnel['interface']}" in detour
    assert 0 < outage <= FAILOVER_BOUND
    assert wait_full("farm-gw", radio["interface"])
    back = on("farm-gw", f"ip route get {SERVER['ipv4']}").stdout
    assert f"dev {radio['interface']}" in back, back
