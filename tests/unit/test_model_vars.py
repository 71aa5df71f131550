"""Each host carries its own slice of the model (kastro_host), not a copy of all of it.

The slices are checked as data, and through Ansible itself: `ansible-inventory --list` with the
project's ansible.cfg (the kastro_model vars plugin) gives every host its slice and no model
variable, and the compilers, fed a host's variables plus `with_model`, produce what they
produce from the whole model: the same rulesets, link configs and desired state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kastro.controller.model_vars import (
    MODEL_VARIABLES,
    cached_host_slice,
    host_slice,
    key_names,
    model_variables,
    with_model,
)
from kastro.controller.state import host_state
from kastro.firewall.ruleset import compile_ruleset
from kastro.inventory.project import plan_inventory
from kastro.lab.topology import build_topology
from kastro.links.config import gateway_config
from tests.unit.test_golden_outputs import FIREWALL_SETTINGS, INVENTORIES, LINKS_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"


def whole(inventory: Path) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    return variables


def plain(value: Any) -> Any:
    """ansible-inventory's JSON with its unsafe-string markers taken off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def inventory_list(*inventories: Path) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("ansible-inventory")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    sources = [arg for inventory in inventories for arg in ("-i", str(inventory))]
    proc = subprocess.run(
        [str(exe), *sources, "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return plain(json.loads(proc.stdout))


def test_a_gateway_gets_its_own_entries_only():
    model = whole(EXAMPLE)
    mine = host_slice(model, "kep-gw", EXAMPLE)
    plan = model["kastro_plan"]
    assert mine["plan"]["hosts"] == {"kep-gw": plan["hosts"]["kep-gw"]}
    assert mine["plan"]["router_ids"] == {"kep-gw": plan["router_ids"]["kep-gw"]}
    assert set(mine["plan"]["zones"]) == {
        f"kep.{kind}" for kind in plan["hosts"]["kep-gw"]["interfaces"]
    }
    assert mine["plan"]["links"]
    for link in mine["plan"]["links"].values():
        assert "kep-gw" in {end["gateway"] for end in link["ends"].values()}
    assert not mine["vpn_server"] and mine["plan"]["vpn_pools"] == {}
    assert mine["teleworker_ids"] == []
    assert mine["management_address"] == plan["hosts"]["kep-gw"]["interfaces"]["management"]["ipv4"]
    assert mine["municipality"] == model["kastro_municipality"]


def test_the_vpn_server_gets_the_pools_and_the_teleworkers():
    model = whole(EXAMPLE)
    mine = host_slice(model, "cityhall-gw", EXAMPLE)
    assert mine["vpn_server"]
    assert mine["plan"]["vpn_pools"] == model["kastro_plan"]["vpn_pools"]
    assert mine["teleworker_ids"] == [p["id"] for p in model["kastro_teleworkers"]]


def test_a_server_gets_its_zone_and_its_address():
    model = whole(EXAMPLE)
    mine = host_slice(model, "fileserver", EXAMPLE)
    entry = model["kastro_plan"]["hosts"]["fileserver"]
    assert set(mine["plan"]["zones"]) == {entry["zone"]}
    assert mine["plan"]["links"] == {} and mine["plan"]["router_ids"] == {}
    assert mine["management_address"] == entry["ipv4"]


def test_a_host_outside_the_plan_gets_an_empty_slice():
    mine = host_slice(whole(EXAMPLE), "stranger", EXAMPLE)
    assert mine["plan"]["hosts"] == {} and mine["management_address"] == "127.0.0.1"


def test_with_model_adds_the_model_back_and_keeps_host_settings():
    variables = {"kastro_host": {"inventory": str(EXAMPLE)}, "telework_port": 4000}
    merged = with_model(variables)
    assert merged["telework_port"] == 4000
    assert merged["kastro_plan"] == whole(EXAMPLE)["kastro_plan"]
    full = whole(EXAMPLE)
    assert with_model(full) is full  # already whole: unchanged
    assert with_model({"x": 1}) == {"x": 1}  # no model known: unchanged


def test_key_names_cover_every_router_and_link():
    plan = whole(EXAMPLE)["kastro_plan"]
    names = key_names(EXAMPLE)
    assert names == {"routers": sorted(plan["router_ids"]), "links": sorted(plan["links"])}


def test_the_cache_follows_a_changed_file(tmp_path):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    before = cached_host_slice(inventory, "kep-gw")
    assert before is not None and before["municipality"]["name"] == "Dimos Kastrou"
    path = inventory / "group_vars/all/municipality.yml"
    time.sleep(0.01)
    path.write_text(path.read_text().replace("Dimos Kastrou", "Dimos Pyrgou"))
    after = cached_host_slice(inventory, "kep-gw")
    assert after is not None and after["municipality"]["name"] == "Dimos Pyrgou"
    assert model_variables(inventory)["kastro_municipality"]["name"] == "Dimos Pyrgou"


def test_no_model_no_slice(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    assert cached_host_slice(tmp_path, "x") is None


@pytest.mark.parametrize("name", sorted(INVENTORIES))
def test_ansible_gives_each_host_its_slice_and_the_same_compiled_output(name):
    inventory = INVENTORIES[name]
    if not (inventory / "group_vars/all/kastro_plan.yml").exists():
        pytest.skip("no plan file in this inventory")
    listed = inventory_list(inventory)["_meta"]["hostvars"]
    model = whole(inventory)
    plan = model["kastro_plan"]
    topology = build_topology(plan_inventory(inventory).model)
    assert set(plan["hosts"]) <= set(listed)
    for host in sorted(plan["hosts"]):
        variables = listed[host]
        assert not MODEL_VARIABLES & set(variables), f"{host} carries a model variable"
        assert variables["kastro_host"] == host_slice(model, host, inventory.resolve())
        assert len(json.dumps(variables)) < 20_000
        if host in (model.get("kastro_ports") or {}):  # derived from the gateway's ports
            assert variables["kastro_interfaces"] == variables["kastro_host"]["interfaces"]
            assert variables["kastro_netdevs"] == variables["kastro_host"]["netdevs"]
        # As the lab does: the inventory names the interfaces (one veth per zone), no VLANs.
        variables = {k: v for k, v in variables.items() if k != "kastro_netdevs"}
        interfaces = {"kastro_interfaces": topology.interface_vars(host)}
        sliced = with_model({**variables, **interfaces})
        full = {**model, **interfaces}
        assert host_state(sliced, host) == host_state(full, host)
        settings = {**FIREWALL_SETTINGS, **host_state(full, host)["firewall"]}
        assert compile_ruleset(host, sliced, settings) == compile_ruleset(host, full, settings)
        if host in plan["router_ids"] and plan.get("links"):
            assert gateway_config(host, sliced, LINKS_SETTINGS) == gateway_config(
                host, full, LINKS_SETTINGS
            )


def test_a_run_without_the_vars_plugin_is_refused_before_any_host_changes():
    exe = Path(sys.executable).with_name("ansible-playbook")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_VARS_ENABLED": "host_group_vars",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    proc = subprocess.run(
        [str(exe), "-i", str(EXAMPLE), str(ROOT / "playbooks/validate.yml")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "the kastro_model vars plugin is not enabled" in " ".join(proc.stdout.split())


def show(inventory: Path, variable: str, plugins: str) -> str:
    exe = Path(sys.executable).with_name("ansible")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    argv = [str(exe), "-i", str(inventory), "cityhall-gw", "-c", "local"]
    proc = subprocess.run(
        [*argv, "-m", "ansible.builtin.debug", "-a", f"var={variable}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        env={**env, "ANSIBLE_VARS_ENABLED": plugins},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_template_in_a_model_value_is_data_not_code(tmp_path):
    """Ansible 2.19 trusts group_vars files as templates: loaded by host_group_vars, a
    template in the municipality's name runs on the controller (the contrast below shows it).
    From the kastro_model plugin the model is data: the same text stays text."""
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    path = inventory / "group_vars/all/municipality.yml"
    path.write_text(path.read_text().replace("Dimos Kastrou", "Dimos {{ 6 * 7 }}"))
    assert "Dimos 42" in show(inventory, "kastro_municipality.name", "host_group_vars")
    out = show(inventory, "kastro_host.municipality.name", "kastro_model")
    assert "Dimos {{ 6 * 7 }}" in out and "Dimos 42" not in out
