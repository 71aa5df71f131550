"""A backup radio beside a fibre between the same two buildings (issue #25: "describe parallel
paths as one link: how?"): two links of their own. Each gets its own addresses, tunnel and lab
cable; OSPF prefers the cheaper; losing either cuts nobody off; nothing else changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from kastro.cli import main
from kastro.controller.model_vars import model_variables
from kastro.inventory.project import plan_inventory, validate_inventory
from kastro.lab.topology import build_topology
from kastro.links.config import gateway_config
from kastro.monitoring.topology import cut_sets
from tests.inventory_helpers import EXAMPLE, without_ports
from tests.unit.test_links_config import SETTINGS

# Named so it sorts after the fibre's name: the fibre keeps its interfaces (interface_label).
RADIO = """  {name}:
    ends: [{a}, {b}]
    medium: radio
    capacity_mbps: 100
    cost: 500
    description: the backup radio beside the fibre
"""


def with_backup_radio(tmp_path: Path, a: str = "kep", b: str = "library") -> Path:
    inventory = tmp_path / "inv"
    without_ports(shutil.copytree(EXAMPLE, inventory))
    path = inventory / "group_vars/all/links.yml"
    radio = RADIO.format(name=f"{a}-{b}-radio", a=a, b=b)
    path.write_text(path.read_text(encoding="utf-8") + radio, encoding="utf-8")
    return inventory


def configs(inventory: Path) -> dict[str, dict]:
    planned = plan_inventory(inventory)
    topology = build_topology(planned.model)
    plan = planned.result.data
    return {
        host: gateway_config(
            host,
            {
                "kastro_municipality": model_variables(inventory).get("kastro_municipality") or {},
                "kastro_plan": plan,
                "kastro_interfaces": topology.interface_vars(host),
            },
            SETTINGS,
        )
        for host in sorted(plan["router_ids"])
    }


def test_a_parallel_link_validates_and_plans_without_moving_anything(tmp_path: Path):
    inventory = with_backup_radio(tmp_path)
    before = yaml.safe_load((EXAMPLE / "group_vars/all/kastro_plan.yml").read_text())
    assert main(["apply", "-i", str(inventory)]) == 0
    after = validate_inventory(inventory).result.data
    assert set(after["links"]) - set(before["kastro_plan"]["links"]) == {"kep-library-radio"}
    for name, link in before["kastro_plan"]["links"].items():
        assert after["links"][name] == link


def test_each_parallel_link_has_interfaces_of_its_own(tmp_path: Path):
    inventory = with_backup_radio(tmp_path)
    main(["apply", "-i", str(inventory)])
    before, after = configs(EXAMPLE), configs(inventory)
    for gateway in ("kep-gw", "library-gw"):
        links = {link["name"]: link for link in after[gateway]["links"]}
        fibre, radio = links["kep-library"], links["kep-library-radio"]
        assert radio["encrypted"] and radio["interface"].startswith("wp-")
        assert fibre["underlay"] != radio["underlay"]  # two cables in the lab, two ports
        assert radio["underlay"].startswith("lp-")
        assert fibre == {link["name"]: link for link in before[gateway]["links"]}["kep-library"]
        assert radio["cost"] == 500 > fibre["cost"]  # OSPF keeps traffic on the fibre
        names = [link["interface"] for link in after[gateway]["links"]]
        assert len(names) == len(set(names)) and all(len(n) <= 15 for n in names)
    for gateway in sorted(set(before) - {"kep-gw", "library-gw"}):
        assert after[gateway] == before[gateway], f"{gateway} changed"


def test_a_spur_with_a_backup_radio_is_cut_off_only_when_both_fail(tmp_path: Path):
    assert ("library-school",) in cut_sets(validate_inventory(EXAMPLE).result.data, "cityhall")[
        "school"
    ]  # the control: the fibre alone cuts the school off
    inventory = with_backup_radio(tmp_path, "library", "school")
    main(["apply", "-i", str(inventory)])
    sets = cut_sets(validate_inventory(inventory).result.data, "cityhall")["school"]
    assert all(len(s) > 1 for s in sets)
    assert ("library-school", "library-school-radio") in sets
