"""Each host's desired state (kastro.controller.state), compiled on the controller.

The firewall must compile the same ruleset whether telework and links ran before it or not:
what it needs of them follows from the inventory. These tests pin the state down as data;
test_golden_outputs shows the rulesets compiled from it are the ones site.yml always compiled,
and molecule/links applies firewall.yml alone to a fresh gateway and compares.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from kastro.controller.state import TELEWORK_DEFAULTS, host_state, links_state, vpn_server
from kastro.inventory.project import hosts_inventory, plan_inventory
from kastro.lab.topology import build_topology
from kastro.links.config import LinksConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"


@pytest.fixture(scope="module")
def example() -> dict[str, dict]:
    """host -> its inventory variables, as Ansible gives them (lab interface names)."""
    planned = plan_inventory(EXAMPLE)
    topology = build_topology(planned.model)
    variables: dict = {}
    for path in sorted((EXAMPLE / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    variables["kastro_plan"] = planned.result.data
    return {
        host: {**variables, "kastro_interfaces": topology.interface_vars(host)}
        for host in planned.result.data["hosts"]
    }


def test_telework_defaults_are_the_roles_defaults():
    defaults = yaml.safe_load((ROOT / "roles/telework/defaults/main.yml").read_text())
    assert {k: defaults[k] for k in TELEWORK_DEFAULTS} == TELEWORK_DEFAULTS


def test_only_the_city_hall_gateway_runs_the_vpn(example):
    servers = sorted(h for h, v in example.items() if vpn_server(v, h))
    assert servers == ["cityhall-gw"]
    state = host_state(example["cityhall-gw"], "cityhall-gw")
    assert state["firewall"]["vpn_interfaces"] == ["wg-tw", "tun-tw"]
    wan = example["cityhall-gw"]["kastro_interfaces"]["wan"]
    assert state["telework"]["input_allow"] == [
        {"name": "wireguard", "ports": ["udp/51820"], "interfaces": [wan, "wan2"]},
        {"name": "openvpn", "ports": ["tcp/443"], "interfaces": [wan, "wan2"]},
    ]


def test_no_teleworker_groups_no_vpn(example):
    variables = {**example["cityhall-gw"], "kastro_teleworker_groups": {}}
    assert not vpn_server(variables, "cityhall-gw")
    assert host_state(variables, "cityhall-gw")["firewall"]["vpn_interfaces"] == []


def test_an_override_in_group_vars_reaches_the_firewall(example):
    variables = {
        **example["cityhall-gw"],
        "telework_port": 51999,
        "telework_openvpn_enabled": False,
    }
    state = host_state(variables, "cityhall-gw")["firewall"]
    assert state["vpn_interfaces"] == ["wg-tw"]
    wireguard = next(a for a in state["input_allow"] if a["name"] == "wireguard")
    assert wireguard["ports"] == ["udp/51999"]
    assert not any(a["name"] == "openvpn" for a in state["input_allow"])


def test_links_tunnels_and_ports(example):
    # deya-gw has a radio link (encrypted: a tunnel) and a leased line (encrypted) and more.
    state = links_state(example["deya-gw"], "deya-gw")
    assert state["linked"]
    plan_links = example["deya-gw"]["kastro_plan"]["links"]
    mine = sorted(n for n, link in plan_links.items() if "deya" in link["ends"])
    encrypted = sorted(n for n in mine if plan_links[n]["encrypted"])
    assert sorted(state["interfaces"]) == encrypted
    ospf = next(a for a in state["input_allow"] if a["name"] == "ospf")
    assert len(ospf["interfaces"]) == len(mine)
    wireguard = next(a for a in state["input_allow"] if a["name"] == "wireguard_links")
    assert len(wireguard["ports"]) == len(set(wireguard["ports"])) == len(encrypted)


def test_servers_have_no_links_or_vpn(example):
    state = host_state(example["fileserver"], "fileserver")["firewall"]
    assert state["vpn_interfaces"] == state["input_allow"] == []
    assert state["link_interfaces"] == {}


def test_management_networks_are_every_buildings_management_zone(example):
    state = host_state(example["fileserver"], "fileserver")["firewall"]
    zones = example["fileserver"]["kastro_plan"]["zones"]
    keys = [k for k in zones if k.endswith(".management")]
    assert len(keys) == 7
    assert state["management_networks"] == [zones[k]["ipv4"] for k in keys] + [
        zones[k]["ipv6"] for k in keys
    ]


def test_state_does_not_depend_on_anything_but_the_variables(example):
    """Same input, same state, and the input is not modified (no hidden host state)."""
    variables = copy.deepcopy(example["cityhall-gw"])
    first = host_state(variables, "cityhall-gw")
    assert variables == example["cityhall-gw"]
    assert host_state(variables, "cityhall-gw") == first


def test_a_missing_link_interface_is_named(example):
    variables = copy.deepcopy(example["kep-gw"])
    variables["kastro_interfaces"]["links"].pop("kep-library")
    with pytest.raises(LinksConfigError, match=r"kastro_interfaces\.links\.kep-library"):
        host_state(variables, "kep-gw")


def test_generated_groups_match_the_state(example):
    planned = plan_inventory(EXAMPLE)
    children = hosts_inventory(planned.model)["all"]["children"]
    assert sorted(children["telework_servers"]["hosts"]) == sorted(
        h for h, v in example.items() if vpn_server(v, h)
    )
    assert sorted(children["linked_gateways"]["hosts"]) == sorted(
        h for h, v in example.items() if links_state(v, h)["linked"]
    )


def test_generated_groups_exist_when_empty():
    """A municipality without teleworkers still has the group (empty): no warning per run."""
    planned = plan_inventory(ROOT / "molecule/_lab/fortress")
    children = hosts_inventory(planned.model)["all"]["children"]
    assert children["telework_servers"] == {}


def test_monitoring_servers_group_is_the_monitoring_hosts():
    planned = plan_inventory(EXAMPLE)
    children = hosts_inventory(planned.model)["all"]["children"]
    assert sorted(children["monitoring_servers"]["hosts"]) == ["monitor"]
