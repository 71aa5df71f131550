"""Gateway ports on a kernel with 8021q (the VM; this machine's kernel has none): the example
city hall's trunk, described in kastro_ports, carries its zones on VLANs.

Inside the VM the gateway is a network namespace whose port `lan` is one end of a veth; the
other end is a switch namespace that splits the VLANs out to one client namespace per zone.
kastro-links (from kastro-host.pyz, with the links.json the links role would write) creates the
VLAN interfaces and their planned addresses; the firewall loads the ruleset Kastro compiles for
the city hall. Then from the clients' side: the policy holds across VLANs, a source address
of another zone is dropped by that VLAN's anti-spoofing, and the VM's real second NIC gets the
port's name from the .link file by its MAC."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

import netaddr
import pytest

from kastro.controller.host_archive import archive_bytes
from kastro.controller.model_vars import model_variables
from kastro.controller.state import host_state
from kastro.firewall.ruleset import compile_ruleset
from kastro.lab import vm
from kastro.links.config import gateway_config, port_link_files
from tests.unit.test_firewall_ruleset import render
from tests.unit.test_golden_outputs import FIREWALL_SETTINGS
from tests.unit.test_host_state import EXAMPLE
from tests.unit.test_links_config import SETTINGS as LINKS_SETTINGS
from tests.unit.test_model_vars import inventory_list

pytestmark = pytest.mark.vm
HOST = "cityhall-gw"
# The zones the test puts a client in: name -> the switch's VLAN id (as kastro_ports says).
CLIENTS = {"staff": 10, "servers": 20, "guest": 50}
LINKS = "/root/kastro-ports"  # what the test copies into the VM
INTRANET_PORT = 443  # policy rule 1: staff -> cityhall.servers (web)
MEMBERS = ("nic1", "nic2")  # kep-gw's bonded ports


def check(machine: vm.Machine, script: str, timeout: float = 120) -> str:
    proc = machine.run("sh", "-c", script, timeout=timeout)
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def in_ns(ns: str, command: str) -> str:
    return f"ip netns exec {ns} {command}"


def links_helper(ns: str, command: str) -> str:
    """kastro-links as the role's wrapper runs it: Debian's python3, isolated, the archive."""
    code = (
        f"import sys; sys.path.insert(0, '{LINKS}/kastro-host.pyz'); "
        "from kastro.host.links import main; sys.exit(main())"
    )
    return in_ns(ns, f"python3 -I -c {shlex.quote(code)} --config {LINKS}/links.json {command}")


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """The city hall's variables as Ansible gives them (kastro_interfaces from the ports)."""
    hostvars = inventory_list(EXAMPLE)["_meta"]["hostvars"][HOST]
    return {**dict(model_variables(EXAMPLE)), **hostvars}


def zone_config(example: dict[str, Any]) -> dict[str, Any]:
    """links.json for the city hall, less its links (their tunnels need the controller's
    keys and a far end; molecule/links tests them): the ports and the zones' addresses."""
    config = gateway_config(HOST, example, LINKS_SETTINGS)
    zone_ifaces = {z["interface"] for z in config["zones"]}
    config["ports"]["names"] = [p for p in config["ports"]["names"] if p["name"] == "lan"]
    config["links"] = []
    config["addresses"] = [a for a in config["addresses"] if a["interface"] in zone_ifaces | {"lo"}]
    return config


def client_address(example: dict[str, Any], zone: str) -> tuple[str, str, str]:
    """(address/prefix, gateway) of a client in the zone: the intranet server in servers."""
    planned = example["kastro_plan"]
    net = netaddr.IPNetwork(planned["zones"][f"cityhall.{zone}"]["ipv4"])
    gateway = planned["hosts"][HOST]["interfaces"][zone]["ipv4"]
    address = planned["hosts"]["intranet"]["ipv4"] if zone == "servers" else str(net[-2])
    return f"{address}/{net.prefixlen}", gateway, address


@pytest.fixture(scope="module")
def trunk(machine: vm.Machine, example: dict[str, Any], tmp_path_factory) -> Iterator[dict]:
    """The gateway, switch and client namespaces wired, kastro-links applied, the firewall
    loaded; removed again afterwards (the VM is shared)."""
    local = tmp_path_factory.mktemp("ports")
    config = zone_config(example)
    (local / "links.json").write_text(json.dumps(config))
    (local / "kastro-host.pyz").write_bytes(archive_bytes())
    settings = {**FIREWALL_SETTINGS, **host_state(example, HOST)["firewall"]}
    (local / "kastro.nft").write_text(render(compile_ruleset(HOST, example, settings)))
    check(machine, f"rm -rf {LINKS} && mkdir -p -m 0700 {LINKS} /etc/kastro /var/lib/kastro")
    for name in ("links.json", "kastro-host.pyz", "kastro.nft"):
        machine.put(local / name, f"{LINKS}/{name}")
    clients = {zone: client_address(example, zone) for zone in CLIENTS}
    check(machine, wire_script(clients))
    yield {"config": config, "clients": clients}
    check(
        machine,
        "for ns in kgw ksw kc-staff kc-servers kc-guest; do ip netns del $ns "
        "2>/dev/null; done; rm -rf /var/lib/kastro/links-applied.json; true",
    )


def wire_script(clients: dict[str, tuple[str, str, str]]) -> str:
    lines = [
        "set -e",
        "modprobe 8021q",
        "for ns in kgw ksw kc-staff kc-servers kc-guest; do ip netns del $ns 2>/dev/null || true; "
        "ip netns add $ns; ip -n $ns link set lo up; done",
        # The gateway's port `lan` (the name kastro_ports gives it) and the switch's trunk.
        "ip link add lan netns kgw type veth peer name trunk netns ksw",
        "ip -n ksw link set trunk up",
        in_ns("kgw", "sysctl -qw net.ipv4.ip_forward=1"),
    ]
    for zone, vlan in CLIENTS.items():
        address, gateway, _ = clients[zone]
        ns = f"kc-{zone}"
        lines += [
            f"ip -n ksw link add link trunk name v{vlan} type vlan id {vlan}",
            f"ip -n ksw link set v{vlan} netns {ns}",
            f"ip -n {ns} link set v{vlan} up",
            f"ip -n {ns} addr add {address} dev v{vlan}",
            f"ip -n {ns} route add default via {gateway}",
        ]
    return "\n".join(lines)


def test_kastro_links_makes_the_vlans_of_the_trunk(machine, trunk):
    out = check(machine, links_helper("kgw", "apply"))
    for vlan in (10, 20, 30, 40, 50):
        assert f"created lan.{vlan}" in out
    details = check(machine, "ip -n kgw -d -j link show lan.20")
    (link,) = json.loads(details)
    assert link["linkinfo"]["info_kind"] == "vlan"
    assert link["linkinfo"]["info_data"]["id"] == 20 and link["link"] == "lan"
    _, gateway, _ = trunk["clients"]["servers"]
    assert gateway in check(machine, "ip -n kgw -4 addr show dev lan.20")
    # A second apply changes nothing; needs-apply agrees.
    assert "nothing to change" in check(machine, links_helper("kgw", "apply"))
    assert json.loads(check(machine, links_helper("kgw", "needs-apply")))["needs_apply"] is False


def counter(machine: vm.Machine, name: str) -> int:
    out = check(machine, in_ns("kgw", f"nft -j list counter inet kastro {shlex.quote(name)}"))
    found = [o["counter"] for o in json.loads(out)["nftables"] if "counter" in o]
    return int(found[0]["packets"])


def connects(machine: vm.Machine, zone: str, address: str, source: str = "") -> bool:
    option = f"-s {source} " if source else ""
    proc = machine.run(
        "sh", "-c", in_ns(f"kc-{zone}", f"nc -z -w 3 {option}{address} {INTRANET_PORT}")
    )
    return proc.returncode == 0


def test_the_policy_and_the_anti_spoofing_hold_across_the_vlans(machine, trunk):
    check(machine, links_helper("kgw", "apply"))
    check(machine, in_ns("kgw", f"nft -f {LINKS}/kastro.nft"))
    _, _, intranet = trunk["clients"]["servers"]
    check(
        machine,
        f"{in_ns('kc-servers', f'timeout 120 nc -lk {INTRANET_PORT}')} "
        ">/dev/null 2>&1 </dev/null &",
    )
    allowed = "policy1_cityhall.staff_to_cityhall.servers"
    before = counter(machine, allowed)
    assert connects(machine, "staff", intranet), "staff (VLAN 10) -> intranet (VLAN 20) refused"
    assert counter(machine, allowed) > before
    assert not connects(machine, "guest", intranet), "guest (VLAN 50) reached the intranet"
    # A staff client using a servers address: dropped on lan.10 before any rule.
    spoofed = str(netaddr.IPNetwork(trunk["clients"]["servers"][0]).network + 50)
    check(machine, in_ns("kc-staff", f"ip addr add {spoofed}/32 dev v10"))
    before = counter(machine, "spoofed_staff")
    assert not connects(machine, "staff", intranet, source=spoofed)
    assert counter(machine, "spoofed_staff") > before


def test_a_vlan_removed_from_the_model_leaves_the_gateway(machine, trunk):
    config = json.loads(json.dumps(trunk["config"]))
    config["ports"]["vlans"] = [v for v in config["ports"]["vlans"] if v["vlan"] != 50]
    config["addresses"] = [a for a in config["addresses"] if a["interface"] != "lan.50"]
    check(machine, f"cat > {LINKS}/links.json <<'EOF'\n{json.dumps(config)}\nEOF")
    out = check(machine, links_helper("kgw", "apply"))
    assert "removed lan.50" in out
    assert machine.run("ip", "-n", "kgw", "link", "show", "lan.50").returncode != 0
    assert machine.run("ip", "-n", "kgw", "link", "show", "lan.40").returncode == 0


def test_the_port_is_named_by_its_mac(machine, example):
    """The VM's second NIC carries the city hall trunk's MAC: the .link file the links role
    writes gives it the name lan, as udev does at boot."""
    config = gateway_config(HOST, example, LINKS_SETTINGS)
    (lan,) = [f for f in port_link_files(config) if f["dest"].endswith("-lan.link")]
    assert vm.SPARE_NIC_MAC in lan["content"]
    check(machine, f"cat > {lan['dest']} <<'EOF'\n{lan['content']}EOF")
    try:
        # What udev does when the NIC appears at boot (--settle would wait on the whole queue).
        check(
            machine,
            "udevadm control --reload && udevadm trigger --action=add "
            "/sys/class/net/eth1 && for i in $(seq 60); do "
            "[ -e /sys/class/net/lan ] && break; sleep 0.5; done",
        )
        assert check(machine, "cat /sys/class/net/lan/address").strip() == vm.SPARE_NIC_MAC
    finally:
        check(
            machine,
            f"rm -f {lan['dest']}; udevadm control --reload; "
            "ip link set lan name eth1 2>/dev/null; true",
        )


def test_a_bond_keeps_the_zones_when_one_cable_fails(machine, trunk):
    """kep-gw's lan: nic1 and nic2 bonded active-backup, its VLANs on the bond. The far end
    of the active port goes down: the other takes over. (`trunk`: the helper is in the VM.)"""
    hostvars = inventory_list(EXAMPLE)["_meta"]["hostvars"]["kep-gw"]
    kep = {**dict(model_variables(EXAMPLE)), **hostvars}
    config = gateway_config("kep-gw", kep, LINKS_SETTINGS)
    zone_ifaces = {z["interface"] for z in config["zones"]}
    config["ports"]["names"] = [p for p in config["ports"]["names"] if p["name"] in MEMBERS]
    config["links"] = []
    config["addresses"] = [a for a in config["addresses"] if a["interface"] in zone_ifaces]
    assert config["ports"]["bonds"] == [{"name": "lan", "members": ["nic1", "nic2"]}]
    check(
        machine,
        f"mkdir -p -m 0700 {LINKS} /etc/kastro /var/lib/kastro && "
        f"cat > {LINKS}/links.json <<'EOF'\n{json.dumps(config)}\nEOF\n"
        "rm -f /var/lib/kastro/links-applied.json; "
        "for ns in kbond kbsw; do ip netns del $ns 2>/dev/null; ip netns add $ns; done; "
        "ip link add nic1 netns kbond type veth peer name p1 netns kbsw && "
        "ip link add nic2 netns kbond type veth peer name p2 netns kbsw && "
        "ip -n kbsw link set p1 up && ip -n kbsw link set p2 up",
    )
    try:
        out = check(machine, links_helper("kbond", "apply"))
        assert "created bond lan" in out and "created lan.10" in out
        status = check(machine, in_ns("kbond", "cat /proc/net/bonding/lan"))
        assert "active-backup" in status and "Slave Interface: nic2" in status
        active = re.search(r"Currently Active Slave: (\w+)", status).group(1)
        other = "nic2" if active == "nic1" else "nic1"
        check(machine, f"ip -n kbsw link set p{active[-1]} down")
        check(
            machine,
            "for i in $(seq 20); do ip netns exec kbond grep -q "
            f"'Currently Active Slave: {other}' /proc/net/bonding/lan && exit 0; "
            "sleep 0.25; done; exit 1",
        )
        staff = kep["kastro_plan"]["hosts"]["kep-gw"]["interfaces"]["staff"]["ipv4"]
        assert staff in check(machine, "ip -n kbond -4 addr show dev lan.10")
        assert "nothing to change" in check(machine, links_helper("kbond", "apply"))
    finally:
        check(
            machine,
            "ip netns del kbond; ip netns del kbsw; rm -f /var/lib/kastro/links-applied.json; true",
        )
