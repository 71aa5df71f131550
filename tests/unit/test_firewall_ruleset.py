"""The policy compiler, checked by nft itself: every host of the example municipality gets a
ruleset that `nft -c` accepts (in a private network namespace, so this machine's own ruleset
is never touched), and the rules say what the policy says."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kastro.firewall.render import render as render_text
from kastro.firewall.ruleset import FirewallConfigError, compile_ruleset, merge_ports
from kastro.inventory.probes import service_probes
from kastro.inventory.project import load_model
from kastro.lab.topology import build_topology

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"


SMALL = ROOT / "tests" / "data" / "lab-small"  # IPv4 only


def example_vars(inventory: Path = EXAMPLE) -> dict:
    variables: dict = {}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    return variables


def settings(**overrides) -> dict:
    return {"management_interface": "eth0", "management_networks": ["10.20.3.96/27"], **overrides}


def render(ruleset: dict) -> str:
    """The text the role writes (kastro.firewall.render), with a fixed header line."""
    return render_text(ruleset, "test")


def hosts_and_vars(inventory: Path = EXAMPLE):
    variables = example_vars(inventory)
    topology = build_topology(load_model(inventory)[0])
    for name in sorted(variables["kastro_plan"]["hosts"]):
        yield name, {**variables, "kastro_interfaces": topology.interface_vars(name)}


needs_nft = pytest.mark.skipif(
    not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare"
)


@needs_nft
@pytest.mark.parametrize(
    ("host", "variables"),
    [*hosts_and_vars(), *hosts_and_vars(SMALL)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_example_host_gets_a_ruleset_nft_accepts(host, variables, tmp_path):
    text = render(compile_ruleset(host, variables, settings()))
    path = tmp_path / "kastro.nft"
    path.write_text(text)
    proc = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_gateway_pairs_follow_the_policy():
    variables = dict(hosts_and_vars())["cityhall-gw"]
    ruleset = compile_ruleset("cityhall-gw", variables, settings())
    chains = {c["name"]: c for c in ruleset["chains"]}
    # staff (every building) -> cityhall.servers: web, dns, file-sharing, printing
    pair = " ".join(chains["from_kep.staff_to_cityhall.servers"]["rules"])
    assert "tcp dport { 53, 80, 443, 445, 631, 9100 }" in pair and "udp dport 53" in pair
    # guests only reach the internet
    assert not [
        n for n in chains if n.startswith("from_cityhall.guest_to_") and "internet" not in n
    ]
    # a pair between two other buildings is not this gateway's business
    assert "from_kep.management_to_library.staff" not in chains
    # teleworkers terminate at city hall
    assert "from_tw_finance_to_cityhall.servers" in chains
    assert any("masquerade" in r for r in ruleset["postrouting"])


def test_non_uplink_gateway_has_no_nat_and_teleworkers_only_towards_its_zones():
    variables = dict(hosts_and_vars())["kep-gw"]
    ruleset = compile_ruleset("kep-gw", variables, settings())
    assert ruleset["postrouting"] == []
    teleworker_chains = [c["name"] for c in ruleset["chains"] if "tw_" in c["name"]]
    # IT admins may reach management zones everywhere, so kep's management zone is guarded here
    assert teleworker_chains == ["from_tw_it-admins_to_kep.management"]
    # transit between its two links is accepted: both ends check the policy. It comes before
    # conntrack, because in a ring a transit gateway may see only one direction of a flow.
    forward = ruleset["forward"]
    transit = next(i for i, r in enumerate(forward) if "counter name transit accept" in r)
    assert transit < forward.index("ct state established,related accept")


def test_link_tunnels_count_as_links():
    variables = dict(hosts_and_vars())["deya-gw"]
    plain = compile_ruleset("deya-gw", variables, settings())
    tunnels = {"deya-cityhall": "wl-cityhall", "library-deya": "wl-library"}
    ruleset = compile_ruleset("deya-gw", variables, settings(link_interfaces=tunnels))
    transit = next(r for r in ruleset["forward"] if "transit" in r)
    assert '"wl-cityhall"' in transit and '"wl-library"' in transit
    assert '"wl-cityhall"' not in next(r for r in plain["forward"] if "transit" in r)


def test_server_input_comes_only_from_allowed_zones():
    variables = dict(hosts_and_vars())["fileserver"]
    rules = "\n".join(compile_ruleset("fileserver", variables, settings())["input"])
    assert "ip saddr 10.20.0.128/25 tcp dport" in rules  # cityhall staff
    assert "10.20.0.0/25" not in rules  # cityhall guest
    assert "ip saddr 10.20.4.192/26 tcp dport { 80, 443, 445 }" in rules  # finance teleworkers


def test_management_comes_before_blocklists():
    variables = dict(hosts_and_vars())["village-gw"]
    rules = compile_ruleset("village-gw", variables, settings())["input"]
    first_block = next(i for i, r in enumerate(rules) if "@blocklist_v4" in r)
    assert 'iifname "eth0" tcp dport 22' in rules[1] and first_block > 1


@pytest.mark.parametrize("host", ["village-gw", "fileserver"])
def test_isolation_comes_after_management_and_before_conntrack(host):
    """An isolated address loses its open sessions too; management SSH is accepted first."""
    ruleset = compile_ruleset(host, dict(hosts_and_vars())[host], settings())
    for hook in ("input", "forward", "output"):
        rules = ruleset[hook]
        if not rules:
            continue
        isolated = [i for i, r in enumerate(rules) if "@isolated_v4" in r]
        assert len(isolated) == 2, (hook, rules)
        established = [i for i, r in enumerate(rules) if r.startswith("ct state established")]
        assert not established or max(isolated) < established[0]
        assert all("!= @allowlist_v4" in rules[i] and rules[i].endswith("drop") for i in isolated)
    assert ruleset["output"].index('oif "lo" accept') < min(
        i for i, r in enumerate(ruleset["output"]) if "@isolated" in r
    )
    management = next(i for i, r in enumerate(ruleset["input"]) if "@management_v4" in r)
    assert management < min(i for i, r in enumerate(ruleset["input"]) if "@isolated" in r)


def test_bad_role_input_names_the_variable():
    variables = dict(hosts_and_vars())["village-gw"]
    with pytest.raises(FirewallConfigError, match=r"firewall_input_allow\[0\].ports"):
        compile_ruleset(
            "village-gw", variables, settings(input_allow=[{"name": "x", "ports": ["tcp/0"]}])
        )
    with pytest.raises(FirewallConfigError, match="firewall_management_networks"):
        compile_ruleset("village-gw", variables, settings(management_networks=["10.0.0.300/8"]))
    with pytest.raises(FirewallConfigError, match="kastro apply"):
        compile_ruleset("no-such-host", variables, settings())


def test_overlapping_port_ranges_are_merged():
    assert merge_ports(["80", "443", "10000-20000", "15000", "20001", "79"]) == [
        "79-80",
        "443",
        "10000-20001",
    ]


def test_a_server_admits_the_monitoring_hosts_probes_of_its_published_services_only():
    """What blackbox_exporter probes (kastro.inventory.probes) is what the firewall admits,
    from the monitoring host alone: the policy publishes web, dns, file-sharing and printing
    on the city-hall servers to staff, ssh to management; the monitor (10.20.3.106) reaches
    exactly those ports and nothing else, and nobody else gets them through this rule."""
    variables = dict(hosts_and_vars())["fileserver"]
    rules = compile_ruleset("fileserver", variables, settings())["input"]
    probes = [r for r in rules if "probes_in" in r]
    assert probes == [
        "ip saddr 10.20.3.106/32 tcp dport { 22, 80, 443, 445, 631, 5061, 8883, 9100 } "
        "counter name probes_in accept",
        "ip saddr 10.20.3.106/32 udp dport 53 counter name probes_in accept",
    ]
    probed = {(p.protocol, p.port) for p in service_probes(variables) if p.host == "fileserver"}
    assert probed == {("tcp", n) for n in (22, 80, 443, 445, 631, 5061, 8883, 9100)} | {("udp", 53)}
    # before the default drop; no IPv6 rule, as no probe goes to an IPv6 address
    assert rules.index(probes[0]) < next(i for i, r in enumerate(rules) if "log prefix" in r)
    assert not any("ip6 saddr" in r and "probes_in" in r for r in rules)


def test_gateways_forward_the_probes_of_their_own_buildings_only():
    by_host = dict(hosts_and_vars())
    cityhall = compile_ruleset("cityhall-gw", by_host["cityhall-gw"], settings())["forward"]
    assert [r.split(" tcp")[0] for r in cityhall if "probes_forward" in r and "tcp" in r] == [
        "ip saddr 10.20.3.106/32 ip daddr 10.20.2.10/32",
        "ip saddr 10.20.3.106/32 ip daddr 10.20.2.11/32",
        "ip saddr 10.20.3.106/32 ip daddr 10.20.2.12/32",  # the mail relay
        "ip saddr 10.20.3.106/32 ip daddr 10.20.4.42/32",  # vault, at kep: the probes leave here
    ]
    # the monitor's probes of itself never cross a gateway
    assert not any("ip daddr 10.20.3.106/32" in r for r in cityhall if "probes" in r)
    # kep forwards the probes of its own server (vault) only; library has no probed server
    kep = compile_ruleset("kep-gw", by_host["kep-gw"], settings())["forward"]
    assert [r.split(" tcp")[0] for r in kep if "probes_forward" in r and "tcp" in r] == [
        "ip saddr 10.20.3.106/32 ip daddr 10.20.4.42/32"
    ]
    library = compile_ruleset("library-gw", by_host["library-gw"], settings())["forward"]
    assert not any("probes_forward" in r for r in library)


def test_no_monitoring_host_no_probe_rules():
    variables = dict(hosts_and_vars())["fileserver"]
    municipality = {**variables["kastro_municipality"], "monitoring_hosts": []}
    ruleset = compile_ruleset(
        "fileserver", {**variables, "kastro_municipality": municipality}, settings()
    )
    assert not any("probes" in r for r in ruleset["input"])
