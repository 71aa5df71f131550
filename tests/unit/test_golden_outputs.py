"""What the controller compiles for the example and lab inventories, byte for byte.

The architecture work (issue 14) must not change behaviour: every inventory Kastro ships must
still compile to the same rulesets, link configurations, QoS tables and teleworker routes. The
expected text lives in tests/golden/; after an intended change, regenerate it with

    python -m tests.unit.test_golden_outputs --update

and review the diff like any other change to what reaches the hosts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from kastro.controller.state import host_state
from kastro.firewall.ruleset import compile_ruleset
from kastro.inventory.project import plan_inventory
from kastro.inventory.published import gateway_uplinks
from kastro.lab.topology import build_topology
from kastro.links.config import gateway_config
from kastro.telework.access import allowed_ips, openvpn_subnets
from tests.unit.test_firewall_ruleset import render

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
INVENTORIES = {
    "example": ROOT / "inventory/example",
    "lab-small": ROOT / "tests/data/lab-small",
    "fortress": ROOT / "molecule/_lab/fortress",
    "ring": ROOT / "molecule/_lab/ring",
    "remote": ROOT / "molecule/_lab/remote",
    "branch": ROOT / "molecule/_lab/branch",
}
LINKS_DEFAULTS = yaml.safe_load((ROOT / "roles/links/defaults/main.yml").read_text())
LINKS_SETTINGS = {
    "qos_enabled": True,
    "shape_percent": LINKS_DEFAULTS["links_qos_shape_percent"],
    "qos_classes": LINKS_DEFAULTS["links_qos_classes"],
    "qos_marking": LINKS_DEFAULTS["links_qos_marking"],
    "qos_untrusted_zone_kinds": LINKS_DEFAULTS["links_qos_untrusted_zone_kinds"],
    "ospf6": True,
}
FIREWALL_SETTINGS = {
    "management_interface": "eth0",
    "management_ports": [22],
    "metrics_ports": yaml.safe_load((ROOT / "roles/firewall/defaults/main.yml").read_text())[
        "firewall_metrics_ports"
    ],
}


def compiled(name: str) -> dict[str, str]:
    """file name -> text, for one inventory: everything the controller derives for its hosts."""
    inventory = INVENTORIES[name]
    planned = plan_inventory(inventory)
    plan = planned.result.data
    topology = build_topology(planned.model)
    variables: dict = {}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    variables["kastro_plan"] = plan
    out: dict[str, str] = {}
    for host in sorted(plan["hosts"]):
        host_vars = {**variables, "kastro_interfaces": topology.interface_vars(host)}
        config = None
        if host in plan["router_ids"]:
            config = gateway_config(host, host_vars, LINKS_SETTINGS)
        state = host_state(host_vars, host)["firewall"]
        ruleset = compile_ruleset(host, host_vars, {**FIREWALL_SETTINGS, **state})
        out[f"{host}.nft"] = render(ruleset)
        uplinks = gateway_uplinks(host_vars, host)
        if uplinks:  # what kastro-uplinks reads (less the role's timing settings)
            out[f"{host}.uplinks.json"] = json.dumps(uplinks, indent=1, sort_keys=True) + "\n"
        if config is not None:
            out[f"{host}.qos.nft"] = config.pop("qos_ruleset")
            out[f"{host}.links.json"] = json.dumps(config, indent=1, sort_keys=True) + "\n"
    if plan.get("vpn_pools"):
        routes = {g: allowed_ips(variables, g) for g in sorted(plan["vpn_pools"])}
        out["telework.json"] = (
            json.dumps(
                {"allowed_ips": routes, "openvpn": openvpn_subnets(variables)},
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )
    return out


@pytest.mark.parametrize("name", sorted(INVENTORIES))
def test_compiled_outputs_are_byte_identical(name: str):
    expected_dir = GOLDEN / name
    got = compiled(name)
    expected = {p.name: p.read_text() for p in sorted(expected_dir.glob("*"))}
    assert sorted(got) == sorted(expected), "a host or file appeared or went away"
    for file, text in got.items():
        assert text == expected[file], (
            f"tests/golden/{name}/{file} differs; if intended, regenerate it "
            "(python -m tests.unit.test_golden_outputs --update) and review the diff"
        )


def update() -> None:
    for name in sorted(INVENTORIES):
        directory = GOLDEN / name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*"):
            old.unlink()
        for file, text in compiled(name).items():
            (directory / file).write_text(text)
        print(f"tests/golden/{name}: written")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python -m tests.unit.test_golden_outputs --update")
    update()
