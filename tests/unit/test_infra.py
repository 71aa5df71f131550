"""Kastro's own flows derived from the example model (kastro.inventory.infra), and the rules
the firewall compiles from them, read back out of the compiled rulesets."""

from __future__ import annotations

import copy

import pytest

from kastro.controller.model_vars import model_variables
from kastro.firewall.ruleset import compile_ruleset
from kastro.inventory import infra
from tests.unit.test_host_state import EXAMPLE, ROOT


@pytest.fixture(scope="module")
def model() -> dict:
    return dict(model_variables(EXAMPLE))


def hosts(model: dict) -> dict:
    return model["kastro_plan"]["hosts"]


def rules(model: dict, host: str) -> list[str]:
    compiled = compile_ruleset(host, {**model, "kastro_interfaces": {}}, {})
    return [*compiled["input"], *compiled["forward"]]


def test_every_host_but_the_cache_goes_through_it(model):
    relay = hosts(model)["mailrelay"]["ipv4"]
    for name in hosts(model):
        got = infra.host_updates(model, name)
        if name == "mailrelay":
            assert got["cache"] and got["proxy"] == ""
            assert got["listen"] == [relay, hosts(model)["mailrelay"]["ipv6"]]
        else:
            assert not got["cache"] and got["proxy"] == f"http://{relay}:3142", name


def test_direct_updates_have_no_proxy_and_no_cache(model):
    direct = copy.deepcopy(model)
    direct["kastro_municipality"]["updates"] = {"direct": True}
    assert infra.host_updates(direct, "fileserver") == {
        "cache": False, "listen": [], "port": 3142, "proxy": ""
    }  # fmt: skip
    assert infra.host_updates(direct, "mailrelay")["cache"] is False


def test_servers_ask_their_zone_gateway_for_the_time(model):
    zone = model["kastro_plan"]["zones"]["cityhall.servers"]
    assert infra.host_time(model, "fileserver") == {
        "servers": [zone["gateway_ipv4"]], "pools": False, "serve": []
    }  # fmt: skip


def test_uplinked_gateways_ask_the_pools_and_the_others_ask_them(model):
    supernets = [str(n) for n in model["kastro_municipality"]["supernets"]]
    assert infra.uplinked_gateways(model) == ["cityhall-gw", "platanos-gw"]
    assert infra.host_time(model, "cityhall-gw") == {
        "servers": [],
        "pools": True,
        "serve": supernets,
    }
    village = infra.host_time(model, "village-gw")
    management = [
        hosts(model)[g]["interfaces"]["management"]["ipv4"] for g in ("cityhall-gw", "platanos-gw")
    ]
    assert village == {"servers": management, "pools": False, "serve": supernets}


def test_a_host_without_the_model_keeps_the_pools():
    assert infra.host_time({}, "lonely") == {"servers": [], "pools": True, "serve": []}
    assert infra.host_updates({}, "lonely")["proxy"] == ""


def test_only_the_cache_reaches_the_mirrors_through_the_gateways(model):
    relay = hosts(model)["mailrelay"]["ipv4"]
    mirrors = [r for r in rules(model, "cityhall-gw") if "updates_mirrors" in r]
    assert mirrors and all(f"ip saddr {relay}/32 " in r or "ip6 saddr" in r for r in mirrors)
    assert all("daddr != " in r for r in mirrors)  # never to a municipal address
    to_cache = [r for r in rules(model, "village-gw") if "updates_cache_forward" in r]
    assert to_cache and all("dport 3142" in r for r in to_cache)
    assert [r for r in rules(model, "mailrelay") if "updates_cache_input" in r]
    assert not [r for r in rules(model, "fileserver") if "updates_cache" in r]


def test_direct_updates_let_every_managed_host_reach_the_mirrors(model):
    direct = copy.deepcopy(model)
    direct["kastro_municipality"]["updates"] = {"direct": True}
    got = rules(direct, "cityhall-gw")
    assert not [r for r in got if "updates_cache" in r]
    mirrors = [r for r in got if "updates_mirrors" in r and r.startswith("ip saddr")]
    assert len(mirrors) == 2 and "10.20.2.10/31" in mirrors[0]


def test_the_gateways_serve_the_time_to_municipal_addresses_only(model):
    got = rules(model, "village-gw")
    time_in = [r for r in got if "time_in" in r]
    assert time_in == [
        "ip saddr 10.20.0.0/16 udp dport 123 counter name time_in accept",
        "ip6 saddr fd4b:5354:2000::/48 udp dport 123 counter name time_in accept",
    ]
    forward = [r for r in got if "time_forward" in r]
    assert forward == [
        "ip saddr 10.20.0.0/16 ip daddr { 10.20.3.97/32, 10.20.4.177/32 } udp dport 123 "
        "counter name time_forward accept"
    ]
    assert not [r for r in rules(model, "fileserver") if "time_" in r]


def test_a_new_link_changes_only_the_rulesets_at_its_ends(tmp_path):
    """The derived flows name the link ends and router ids by the supernets' rest outside
    zones and pools, so adding a link keeps every other gateway's ruleset byte for byte
    (molecule/links adds kep - deya and expects only those two gateways to change)."""
    import shutil

    import yaml

    from kastro.cli import main
    from kastro.inventory.project import plan_inventory
    from kastro.lab.topology import build_topology

    ring = tmp_path / "ring"
    shutil.copytree(ROOT / "molecule" / "_lab" / "ring", ring, symlinks=True)

    def compiled() -> dict[str, dict]:
        variables = dict(model_variables(ring))
        topology = build_topology(plan_inventory(ring).model)  # the lab's ports, as in molecule
        gateways = [h for h, e in hosts(variables).items() if e["role"] == "gateway"]
        return {
            g: compile_ruleset(
                g, {**variables, "kastro_interfaces": topology.interface_vars(g)}, {}
            )
            for g in gateways
        }

    before = compiled()
    model_file = ring / "group_vars" / "all" / "model.yml"
    model = yaml.safe_load(model_file.read_text(encoding="utf-8"))
    model["kastro_links"]["kep-deya"] = {
        "ends": ["kep", "deya"],
        "medium": "radio",
        "capacity_mbps": 50,
    }
    model_file.write_text(yaml.safe_dump(model, sort_keys=False), encoding="utf-8")
    assert main(["apply", "-i", str(ring)]) == 0
    after = compiled()
    assert {g for g in before if before[g] != after[g]} == {"kep-gw", "deya-gw"}
