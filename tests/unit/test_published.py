"""Published services (kastro_published, issue #22): what the gateways, the host and the
links role derive from the model. The lab checks the packets (molecule/firewall-traffic)."""

import copy

import pytest

from kastro.controller.state import host_state
from kastro.firewall.ruleset import FirewallConfigError, compile_ruleset
from kastro.inventory.published import forwards, gateway_uplinks
from kastro.links.config import gateway_config
from tests.unit.test_firewall_ruleset import hosts_and_vars, render, settings
from tests.unit.test_golden_outputs import LINKS_SETTINGS

HOSTS = dict(hosts_and_vars())
INTRANET_V4 = HOSTS["intranet"]["kastro_plan"]["hosts"]["intranet"]["ipv4"]
VAULT_V4 = HOSTS["vault"]["kastro_plan"]["hosts"]["vault"]["ipv4"]


def test_the_example_publishes_its_website_and_mail_relay_on_both_isps():
    found = forwards(HOSTS["cityhall-gw"])
    assert [(f.name, f.family, f.public, f.uplink, f.tcp) for f in found] == [
        ("website", 4, "198.51.100.3", "isp-fibre", ("80", "443")),
        ("website", 6, "2001:db8:100::3", "isp-fibre", ("80", "443")),
        ("mail-relay", 4, "198.51.100.4", "isp-fibre", ("25",)),
        ("mail-relay", 6, "2001:db8:100::4", "isp-fibre", ("25",)),
        ("website-vdsl", 4, "198.18.1.3", "isp-vdsl", ("80", "443")),
        ("mail-relay-vdsl", 4, "198.18.1.4", "isp-vdsl", ("25",)),
    ]
    assert found[0].target == INTRANET_V4 and found[0].zone == "cityhall.servers"


def test_the_uplink_gateway_translates_and_admits_only_what_it_translated():
    text = render(compile_ruleset("cityhall-gw", HOSTS["cityhall-gw"], settings()))
    dnat = "ip daddr 198.51.100.3 tcp dport { 80, 443 } counter name published_website_v4 "
    assert dnat + f"dnat ip to {INTRANET_V4}" in text
    assert f"ct status dnat ip daddr {INTRANET_V4} tcp dport {{ 80, 443 }} ct state new " in text
    # Hairpin: a neighbour in the servers zone asking for the public address.
    assert f"ct status dnat ip saddr 10.20.2.0/26 ip daddr {INTRANET_V4} masquerade" in text


def test_other_gateways_and_other_hosts_know_nothing_of_it():
    for host in ("kep-gw", "library-gw", "fileserver", "monitor"):
        assert "published" not in render(compile_ruleset(host, HOSTS[host], settings())), host


def test_the_host_admits_its_published_ports_from_anyone():
    text = render(compile_ruleset("intranet", HOSTS["intranet"], settings()))
    assert "meta nfproto ipv4 tcp dport { 80, 443 } counter name published_website_v4_in" in text


def _publish_vault(variables: dict) -> dict:
    changed = copy.deepcopy(variables)
    changed["kastro_published"]["archive"] = {
        "host": "vault", "services": ["web"], "ipv4": "198.51.100.4",
        "from": ["203.0.113.7/32"], "accept_risk": "test",
    }  # fmt: skip
    return changed


def test_a_host_in_another_building_is_admitted_by_its_own_gateway_from_the_allowed_only():
    hall = render(compile_ruleset("cityhall-gw", _publish_vault(HOSTS["cityhall-gw"]), settings()))
    assert f"dnat ip to {VAULT_V4}" in hall
    kep = render(compile_ruleset("kep-gw", _publish_vault(HOSTS["kep-gw"]), settings()))
    assert "dnat" not in kep
    assert (
        f"ip daddr {VAULT_V4} ip saddr 203.0.113.7/32 tcp dport {{ 80, 443 }} counter name "
        "published_archive_v4_in accept"
    ) in kep


def test_a_port_of_the_gateways_own_vpn_cannot_be_published_on_its_own_address():
    variables = copy.deepcopy(HOSTS["cityhall-gw"])
    variables["kastro_published"]["website"]["ipv4"] = "198.51.100.2"  # the uplink's own
    state = host_state(variables, "cityhall-gw")["firewall"]
    with pytest.raises(FirewallConfigError, match=r"tcp/443 on 198.51.100.2.*openvpn"):
        compile_ruleset("cityhall-gw", variables, {**settings(), **state})


def test_each_uplink_carries_its_own_and_its_public_addresses():
    variables = HOSTS["cityhall-gw"]
    fibre, vdsl = gateway_uplinks(variables, "cityhall-gw")
    assert (fibre["interface"], vdsl["interface"]) == ("wan", "wan2")
    assert fibre["addresses"] == [
        "198.51.100.2/24", "2001:db8:100::2/64", "198.51.100.3/32", "2001:db8:100::3/128",
        "198.51.100.4/32", "2001:db8:100::4/128",
    ]  # fmt: skip
    assert vdsl["addresses"] == ["198.18.1.2/24", "198.18.1.3/32", "198.18.1.4/32"]
    assert (fibre["gateway_ipv4"], fibre["network_ipv4"]) == ("198.51.100.1", "198.51.100.0/24")
    assert (fibre["table"], fibre["mark"], vdsl["table"], vdsl["mark"]) == (
        101,
        0x4B01,
        102,
        0x4B02,
    )
    assert gateway_uplinks(HOSTS["kep-gw"], "kep-gw") == []
    # The uplinks role puts them on the ports: the links role no longer does.
    config = gateway_config("cityhall-gw", variables, LINKS_SETTINGS)
    assert not [a for a in config["addresses"] if a["interface"] in ("wan", "wan2")]


def test_two_uplinks_mark_each_connection_and_masquerade_on_each():
    text = render(compile_ruleset("cityhall-gw", HOSTS["cityhall-gw"], {**settings(), **host_state(
        HOSTS["cityhall-gw"], "cityhall-gw")["firewall"]}))  # fmt: skip
    for iface, mark in (("wan", "0x4b01"), ("wan2", "0x4b02")):
        assert f'iifname "{iface}" ct state new ct mark set {mark}' in text
        assert f'oifname "{iface}" ct state new ct mark set {mark}' in text
        assert f'oifname "{iface}" ip saddr 10.20.0.0/16 masquerade' in text
        assert f'iifname "{iface}" ip saddr 10.20.0.0/16 counter name spoofed_wan drop' in text
    assert "ct mark { 0x4b01, 0x4b02 } meta mark set ct mark" in text
    # One uplink: nothing to keep apart, no marks.
    kep = render(compile_ruleset("platanos-gw", HOSTS["platanos-gw"], settings()))
    assert "ct mark" not in kep


def test_an_internet_branch_changes_the_links_of_no_gateway_but_the_hub(tmp_path):
    """Issue #22: the example's village office over the internet (platanos); without it, every
    other gateway's link settings (addresses, tunnels, ports, QoS) are byte for byte the same."""
    import shutil

    import yaml

    from kastro.cli import main
    from kastro.inventory.project import plan_inventory
    from kastro.lab.topology import build_topology
    from tests.unit.test_firewall_ruleset import EXAMPLE

    def links_of(inventory):
        planned = plan_inventory(inventory)
        variables = {}
        for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
            variables.update(yaml.safe_load(path.read_text()) or {})
        variables["kastro_plan"] = planned.result.data
        topology = build_topology(planned.model)
        return {
            host: gateway_config(
                host, {**variables, "kastro_interfaces": topology.interface_vars(host)},
                LINKS_SETTINGS,
            )
            for host in planned.result.data["router_ids"]
        }  # fmt: skip

    without = tmp_path / "inv"
    shutil.copytree(EXAMPLE, without)
    gv = without / "group_vars" / "all"
    for name, start, end in (
        ("buildings.yml", "\n  platanos:\n", None),
        ("links.yml", "  platanos-cityhall:", None),
        ("municipality.yml", "    - name: platanos-4g", "  mtu: 1500"),
        ("ports.yml", "  platanos-gw:\n", None),
    ):
        text = (gv / name).read_text()
        cut = text.index(start)
        rest = text.index(end) if end else len(text)
        (gv / name).write_text(text[:cut] + ("\n" if end is None else "") + text[rest:])
    assert main(["apply", "-i", str(without)]) == 0
    before, after = links_of(without), links_of(EXAMPLE)
    changed = sorted(h for h in before if before[h] != after[h])
    assert changed == ["cityhall-gw"]
    tunnel = next(e for e in after["platanos-gw"]["links"] if e["name"] == "platanos-cityhall")
    assert tunnel["underlay"] == "wan" and tunnel["cost"] == 65000
    assert tunnel["wireguard"]["peer_endpoint"].startswith("198.51.100.2:")
    assert tunnel["wireguard"]["keepalive"] == 25
    hub = next(e for e in after["cityhall-gw"]["links"] if e["name"] == "platanos-cityhall")
    assert "peer_endpoint" not in hub["wireguard"]
