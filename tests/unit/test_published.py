"""Published services (kastro_published, issue #22): what the gateways, the host and the
links role derive from the model. The lab checks the packets (molecule/firewall-traffic)."""

import copy

import pytest

from kastro.controller.state import host_state
from kastro.firewall.ruleset import FirewallConfigError, compile_ruleset
from kastro.inventory.published import forwards, uplink_addresses
from kastro.links.config import gateway_config
from tests.unit.test_firewall_ruleset import hosts_and_vars, render, settings
from tests.unit.test_golden_outputs import LINKS_SETTINGS

HOSTS = dict(hosts_and_vars())
INTRANET_V4 = HOSTS["intranet"]["kastro_plan"]["hosts"]["intranet"]["ipv4"]
VAULT_V4 = HOSTS["vault"]["kastro_plan"]["hosts"]["vault"]["ipv4"]


def test_the_example_publishes_its_website_on_both_families():
    found = forwards(HOSTS["cityhall-gw"])
    assert [(f.name, f.family, f.public, f.uplink, f.tcp) for f in found] == [
        ("website", 4, "198.51.100.3", "isp-fibre", ("80", "443")),
        ("website", 6, "2001:db8:100::3", "isp-fibre", ("80", "443")),
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


def test_the_uplink_carries_its_own_and_the_public_addresses():
    variables = HOSTS["cityhall-gw"]
    assert uplink_addresses(variables, "cityhall") == [
        "198.51.100.2/24", "2001:db8:100::2/64", "198.51.100.3/32", "2001:db8:100::3/128",
    ]  # fmt: skip
    config = gateway_config("cityhall-gw", variables, LINKS_SETTINGS)
    wan = [a["address"] for a in config["addresses"] if a["interface"] == "wan"]
    assert wan == uplink_addresses(variables, "cityhall")
    assert uplink_addresses(variables, "kep") == []
