"""Gateways described by their ports (kastro_ports, issue #23): what Ansible gives the roles,
what kastro-links is told to create, and what the firewall compiles from it. The kernel side
(VLANs on a trunk, names by MAC) runs in the VM: tests/vm/test_vm_ports.py."""

from __future__ import annotations

import json

import pytest

from kastro.controller.model_vars import model_variables
from kastro.firewall.ruleset import compile_ruleset
from kastro.host.links import ConfigValueError, check_config
from kastro.links.config import gateway_config, port_link_files
from tests.unit.test_golden_outputs import FIREWALL_SETTINGS
from tests.unit.test_host_state import EXAMPLE
from tests.unit.test_links_config import SETTINGS as LINKS_SETTINGS
from tests.unit.test_model_vars import inventory_list


@pytest.fixture(scope="module")
def hostvars() -> dict:
    return inventory_list(EXAMPLE)["_meta"]["hostvars"]


def test_ansible_gives_a_gateway_its_interfaces_from_its_ports(hostvars):
    city = hostvars["cityhall-gw"]["kastro_interfaces"]
    assert city["zones"] == {
        "management": "lan", "staff": "lan.10", "servers": "lan.20", "voip": "lan.30",
        "cctv": "lan.40", "guest": "lan.50",
    }  # fmt: skip
    assert city["links"] == {"cityhall-kep": "fibre", "deya-cityhall": "leased"}
    assert city["wan"] == "wan"
    library = hostvars["library-gw"]["kastro_interfaces"]["links"]
    assert library == {"kep-library": "links.101", "library-deya": "links.102",
                       "library-school": "links.103"}  # fmt: skip
    assert "kastro_interfaces" not in hostvars["fileserver"]


def test_kastro_links_is_told_the_bonds_vlans_and_names(hostvars):
    model = dict(model_variables(EXAMPLE))
    kep = gateway_config("kep-gw", {**model, **hostvars["kep-gw"]}, LINKS_SETTINGS)
    assert kep["ports"]["bonds"] == [{"name": "lan", "members": ["nic1", "nic2"]}]
    assert [v["name"] for v in kep["ports"]["vlans"]] == ["lan.10", "lan.30", "lan.50"]
    assert {p["name"] for p in kep["ports"]["names"]} == {"nic1", "nic2", "fibre1", "fibre2"}
    # The zone addresses go on the VLAN interfaces.
    planned = model["kastro_plan"]
    gateway = planned["hosts"]["kep-gw"]["interfaces"]["staff"]["ipv4"]
    prefix = planned["zones"]["kep.staff"]["ipv4"].split("/")[1]
    assert {"interface": "lan.10", "address": f"{gateway}/{prefix}"} in kep["addresses"]
    check_config(kep)  # what the helper accepts before it runs a command


def test_a_port_with_a_mac_gets_a_link_file(hostvars):
    model = dict(model_variables(EXAMPLE))
    city = gateway_config("cityhall-gw", {**model, **hostvars["cityhall-gw"]}, LINKS_SETTINGS)
    files = {f["dest"]: f["content"] for f in port_link_files(city)}
    lan = files["/etc/systemd/network/10-kastro-lan.link"]
    assert "PermanentMACAddress=52:54:00:4b:01:01\n" in lan and "Name=lan\n" in lan
    assert len(files) == 5  # lan, wan, wan2, fibre, leased


@pytest.mark.parametrize(
    ("ports", "where"),
    [
        ({"bonds": [{"name": "lan", "members": ["nic1", "x;reboot"]}]}, "members[1]"),
        ({"vlans": [{"name": "lan.10", "parent": "lan", "vlan": "10; reboot"}]}, "vlan"),
        ({"vlans": [{"name": "lan.10", "parent": "-lan", "vlan": 10}]}, "parent"),
        ({"names": [{"name": "lan", "mac": "52:54:00:4b:01:01\nName=eth0"}]}, "mac"),
    ],
)
def test_the_helper_refuses_a_value_it_did_not_expect(ports, where):
    with pytest.raises(ConfigValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
        check_config({"ports": ports})


def test_the_firewall_guards_each_vlan_interface(hostvars):
    model = dict(model_variables(EXAMPLE))
    variables = {**model, "kastro_interfaces": hostvars["cityhall-gw"]["kastro_interfaces"]}
    compiled = compile_ruleset("cityhall-gw", variables, FIREWALL_SETTINGS)
    text = json.dumps(compiled)
    staff = model["kastro_plan"]["zones"]["cityhall.staff"]["ipv4"]
    for iface in ("lan.10", "lan.20", "lan.50"):
        assert f'iifname \\"{iface}\\"' in text, iface
    # Anti-spoofing: what comes in on the staff VLAN must come from the staff network.
    assert (
        f'iifname "lan.10" ip saddr != {{ {staff}, 0.0.0.0 }} counter name spoofed_staff drop'
        in (compiled["prerouting"])
    )


def test_an_inventory_that_names_the_interfaces_keeps_them(tmp_path):
    """The container lab has no 8021q: its overlay names one veth per zone, and the gateway
    then gets neither the ports' interfaces nor VLANs to create."""
    overlay = tmp_path / "overlay.yml"
    overlay.write_text(
        "all:\n  hosts:\n    kep-gw:\n      kastro_interfaces: {zones: {staff: eth1}}\n"
    )
    listed = inventory_list(EXAMPLE, overlay)["_meta"]["hostvars"]
    assert listed["kep-gw"]["kastro_interfaces"] == {"zones": {"staff": "eth1"}}
    assert "kastro_netdevs" not in listed["kep-gw"]
    assert listed["cityhall-gw"]["kastro_interfaces"]["zones"]["staff"] == "lan.10"


def test_a_port_that_is_not_there_stops_the_helper_before_any_change():
    """A wrong MAC, or a gateway whose .link files have not named its ports yet (they do at
    boot): kastro-links says which and changes nothing."""
    from kastro.host.links import missing_ports

    ports = {
        "names": [
            {"name": "kzz0", "mac": "02:00:00:00:00:99"},
            {"name": "kzz1", "mac": "00:00:00:00:00:00"},
        ],
        "bonds": [],
        "vlans": [{"name": "kzz0.10", "parent": "kzz0", "vlan": 10}],
    }
    problems = missing_ports(ports)
    assert problems[0].startswith("port kzz0 is missing: no interface has MAC 02:00:00:00:00:99")
    # lo (at least) has the all-zero address: the port "is still called" that interface.
    assert problems[1].startswith("port kzz1 (MAC 00:00:00:00:00:00) is still called ")
    assert len(problems) == 2
