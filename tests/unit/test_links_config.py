"""The links role's configuration, computed from the plan (kastro.links.config).

The lab scenario (molecule/links) shows the result works on real hosts; these tests pin down
the rules that must hold for any municipality: stable derivations, only the two ends of a new
link change, clear errors for bad settings, and a DSCP table nftables accepts.
"""

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kastro.controller.model_vars import model_variables
from kastro.inventory.project import plan_inventory, write_plan
from kastro.lab.topology import build_topology
from kastro.links.config import (
    LinksConfigError,
    gateway_config,
    tunnel_interface,
    underlay_addresses,
    wireguard_port,
)

ROOT = Path(__file__).resolve().parents[2]
ROLE_DEFAULTS = yaml.safe_load((ROOT / "roles/links/defaults/main.yml").read_text())
SETTINGS = {
    "qos_enabled": True,
    "shape_percent": ROLE_DEFAULTS["links_qos_shape_percent"],
    "qos_classes": ROLE_DEFAULTS["links_qos_classes"],
    "qos_marking": ROLE_DEFAULTS["links_qos_marking"],
}


def configs(inventory: Path) -> dict[str, dict]:
    """Every gateway's configuration, with the lab's interface names."""
    planned = plan_inventory(inventory)
    topology = build_topology(planned.model)
    plan = planned.result.data
    out = {}
    for host in sorted(plan["router_ids"]):
        variables = {
            "kastro_municipality": model_variables(inventory).get("kastro_municipality") or {},
            "kastro_plan": plan,
            "kastro_interfaces": topology.interface_vars(host),
        }
        out[host] = gateway_config(host, variables, SETTINGS)
    return out


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    copy_ = tmp_path / "ring"
    shutil.copytree(ROOT / "molecule/_lab/ring", copy_)
    return copy_


def test_adding_a_link_changes_only_the_gateways_at_its_ends(ring: Path):
    before = configs(ring)
    old_plan = yaml.safe_load((ring / "group_vars/all/kastro_plan.yml").read_text())["kastro_plan"]
    model_file = ring / "group_vars/all/model.yml"
    model = yaml.safe_load(model_file.read_text())
    model["kastro_links"]["kep-deya"] = {
        "ends": ["kep", "deya"],
        "medium": "radio",
        "capacity_mbps": 50,
    }
    model_file.write_text(yaml.safe_dump(model, sort_keys=False))
    write_plan(ring, plan_inventory(ring))
    new_plan = yaml.safe_load((ring / "group_vars/all/kastro_plan.yml").read_text())["kastro_plan"]

    # The plan: one new link, nothing else moved.
    assert set(new_plan["links"]) - set(old_plan["links"]) == {"kep-deya"}
    for section in ("links", "router_ids", "zones", "hosts"):
        for key, entry in old_plan[section].items():
            assert new_plan[section][key] == entry, f"{section}.{key} moved"

    # The gateways: the two ends gain the link; the others' configuration is identical.
    after = configs(ring)
    changed = {g for g in before if before[g] != after[g]}
    assert changed == {"kep-gw", "deya-gw"}
    for gateway in changed:
        old_links = {link["name"]: link for link in before[gateway]["links"]}
        new_links = {link["name"]: link for link in after[gateway]["links"]}
        assert set(new_links) - set(old_links) == {"kep-deya"}
        assert all(new_links[name] == link for name, link in old_links.items())


def test_encrypted_links_get_a_tunnel_a_link_local_underlay_and_their_own_port(ring: Path):
    lib = configs(ring)["lib-gw"]
    links = {link["name"]: link for link in lib["links"]}
    radio, fibre = links["kep-lib"], links["lib-deya"]
    assert (radio["interface"], radio["underlay"]) == ("wl-kep", "l-kep")
    assert radio["routed_mtu"] == 1420 and radio["mtu"] == 1500  # WireGuard's 80 bytes
    assert radio["wireguard"]["address"].startswith("169.254.")
    assert (fibre["interface"], fibre["underlay"], fibre["routed_mtu"]) == (
        "l-deya",
        "l-deya",
        1500,
    )
    assert "wireguard" not in fibre
    ports = [link["wireguard"]["port"] for link in lib["links"] if link["encrypted"]]
    assert len(ports) == len(set(ports)) == 2
    # Both ends agree: same port, each other's underlay address.
    kep = next(link for link in configs(ring)["kep-gw"]["links"] if link["name"] == "kep-lib")
    assert kep["wireguard"]["port"] == radio["wireguard"]["port"]
    assert (
        kep["wireguard"]["peer_endpoint"].split(":")[0]
        == radio["wireguard"]["address"].split("/")[0]
    )
    assert kep["peer_ipv4"] == radio["ipv4"].split("/")[0]


def test_derivations_are_stable_and_fit_linux_limits():
    assert underlay_addresses("10.20.255.246/31") == ("169.254.255.246/31", "169.254.255.247/31")
    assert wireguard_port("10.20.255.246/31") == wireguard_port("10.20.255.246/31")
    assert 51821 <= wireguard_port("10.99.0.0/31") < 51821 + 8192
    assert tunnel_interface("kep") == "wl-kep"
    long = tunnel_interface("agios-dimitrios-village")
    assert len(long) <= 15 and long != tunnel_interface("agios-dimitrios-town")


def test_shaping_follows_capacity_and_the_shares(ring: Path):
    school = next(link for link in configs(ring)["lib-gw"]["links"] if link["name"] == "lib-school")
    # 20 Mbit/s radio, shaped to 95 %, minus WireGuard's overhead at full-size packets.
    assert school["shaped_rate_kbit"] == 20_000 * 95 // 100 * 1420 // 1500
    classes = {c["name"]: c for c in school["qos"]}
    assert list(classes) == ["voip", "cctv", "business", "default", "bulk"]
    assert classes["voip"]["ceil_kbit"] == classes["voip"]["rate_kbit"]  # strict: no borrowing
    assert classes["bulk"]["ceil_kbit"] == school["shaped_rate_kbit"]
    assert 46 in classes["voip"]["dscp"] and 8 in classes["bulk"]["dscp"]
    assert sum(c["rate_kbit"] for c in classes.values()) <= school["shaped_rate_kbit"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["qos_classes"][0].update(share=90), "add up to 180 %"),
        (lambda s: s["qos_classes"][0].update(dscp=["premium"]), "'premium' is not a DSCP name"),
        (lambda s: s["qos_classes"].pop(3), "name one class 'default'"),
        (
            lambda s: s["qos_marking"].append({"name": "x", "ports": ["icmp"], "dscp": "ef"}),
            "ports",
        ),
        (
            lambda s: s["qos_marking"].append({"name": "x", "dscp": "ef"}),
            "either zone_kind, or ports",
        ),
    ],
)
def test_bad_settings_say_what_to_fix(ring: Path, change, message):
    planned = plan_inventory(ring)
    plan = planned.result.data
    variables = {
        "kastro_plan": plan,
        "kastro_interfaces": build_topology(planned.model).interface_vars("lib-gw"),
    }
    settings = copy.deepcopy(SETTINGS)
    change(settings)
    with pytest.raises(LinksConfigError, match=message):
        gateway_config("lib-gw", variables, settings)


def test_marking_by_service_name_uses_the_inventory_ports(ring: Path):
    planned = plan_inventory(ring)
    variables = {
        "kastro_plan": planned.result.data,
        "kastro_interfaces": build_topology(planned.model).interface_vars("lib-gw"),
        "kastro_services": {"voice": {"ports": ["udp/5060", "udp/16384-32767"]}},
    }
    settings = {
        **SETTINGS,
        "qos_marking": [{"name": "phones", "services": ["voice"], "dscp": "ef"}],
    }
    ruleset = gateway_config("lib-gw", variables, settings)["qos_ruleset"]
    assert (
        'meta l4proto udp th dport { 5060, 16384-32767 } ip dscp set ef comment "phones"' in ruleset
    )
    settings["qos_marking"][0]["services"] = ["voip"]
    with pytest.raises(
        LinksConfigError, match="'voip' is not in kastro_services; use one of voice"
    ):
        gateway_config("lib-gw", variables, settings)


def test_a_missing_link_interface_names_the_variable(ring: Path):
    planned = plan_inventory(ring)
    interfaces = build_topology(planned.model).interface_vars("lib-gw")
    del interfaces["links"]["lib-school"]  # type: ignore[attr-defined]
    with pytest.raises(LinksConfigError, match=r"kastro_interfaces\.links\.lib-school"):
        gateway_config(
            "lib-gw",
            {"kastro_plan": planned.result.data, "kastro_interfaces": interfaces},
            SETTINGS,
        )


@pytest.mark.parametrize("inventory", ["molecule/_lab/ring", "inventory/example"])
def test_the_marking_table_loads_in_nftables(inventory: str, tmp_path: Path):
    for host, config in configs(ROOT / inventory).items():
        ruleset = tmp_path / f"{host}.nft"
        ruleset.write_text(config["qos_ruleset"])
        check = subprocess.run(
            ["unshare", "--net", "nft", "-c", "-f", str(ruleset)], capture_output=True, text=True
        )
        assert check.returncode == 0, f"{host}: {check.stderr}"
        # Marks from other gateways are kept; everything else is re-marked at the edge.
        lines = config["qos_ruleset"].splitlines()
        first = next(i for i, line in enumerate(lines) if "dscp set cs0" in line)
        assert "return" in lines[first - 1] and "l-" in lines[first - 1]
