"""Regression tests for the security review of 6cf8931 (issue 13), one or more per finding.

Each test failed on that commit and passes now; the finding's number is in the test's name.
Findings that need real hosts (4, 6, 9 and the attacker's side of 7) are tested in
tests/lab/test_hardening.py; finding 3 in tests/monitors/test_robustness.py; the
validation findings (1, 8, 13) also as broken inventories 57-61 in tests/data/broken.
"""

import copy
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from kastro.cli import main
from kastro.controller.host_archive import build as build_archive
from kastro.controller.secrets import MARKER, SecretsDirError, secrets_dir
from kastro.firewall.ruleset import Chain, FirewallConfigError, Ruleset, compile_ruleset
from kastro.inventory.errors import InvalidInventoryError
from kastro.inventory.project import load_model, read_previous_plan, validate_inventory
from kastro.lab.topology import build_topology
from monitors.alerts import eve_line
from monitors.capture import CaptureError, read_file
from monitors.config import parse_config
from monitors.detectors.base import ConfigError
from tests.inventory_helpers import EXAMPLE, ROOT, broken_copy
from tests.unit.test_firewall_ruleset import example_vars, render, settings

needs_nft = pytest.mark.skipif(
    not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare"
)


def helper(name: str):
    """A host program (kastro_firewall -> kastro.host.firewall)."""
    return importlib.import_module(f"kastro.host.{name.removeprefix('kastro_')}")


def gateway_vars(inventory: Path = EXAMPLE, host: str = "cityhall-gw") -> dict:
    variables = example_vars(inventory)
    topology = build_topology(load_model(inventory)[0])
    return {**variables, "kastro_interfaces": topology.interface_vars(host)}


# --- 1. chain, counter and set names ------------------------------------------------------


def test_1_a_building_zone_and_a_teleworker_group_never_share_a_chain():
    """The review's case: zone 'finance' of a building named 'tw' and the teleworker group
    'finance' both became from_tw.finance_to_cityhall.servers, and nft merged the chains."""
    variables = gateway_vars()
    plan = copy.deepcopy(variables["kastro_plan"])
    # A building 'tw' that validation now refuses, injected past it to test the compiler alone.
    plan["zones"]["tw.finance"] = {
        "building": "tw",
        "kind": "guest",  # guests have no rule to the servers: only the one added here
        "hosts": 10,
        "ipv4": "10.20.250.0/24",
    }
    policy = [
        *variables["kastro_policy"],
        {"from": "tw.finance", "to": "cityhall.servers", "services": ["ssh"]},
    ]
    ruleset = compile_ruleset(
        "cityhall-gw", {**variables, "kastro_plan": plan, "kastro_policy": policy}, settings()
    )
    names = [c["name"] for c in ruleset["chains"]]
    assert len(names) == len(set(names))
    zone_chain = next(c for c in ruleset["chains"] if c["comment"].startswith("tw.finance ->"))
    vpn_chain = next(
        c for c in ruleset["chains"] if c["comment"].startswith("teleworkers.finance ->")
    )
    assert zone_chain["name"] != vpn_chain["name"]
    # The zone's chain allows only SSH; the VPN pool's chain only what its rule names.
    assert all("dport 22 " in r for r in zone_chain["rules"])
    assert not any("dport 22 " in r for r in vpn_chain["rules"])


def test_1_the_compiler_refuses_two_chains_or_counters_of_one_name():
    out = Ruleset("h", "gateway")
    out.add_chain(Chain("from_a_to_b", "a -> b"))
    with pytest.raises(FirewallConfigError, match="two chains would be named"):
        out.add_chain(Chain("from_a_to_b", "c -> d"))
    out.counter("x", "one meaning")
    out.counter("x", "one meaning")  # the same counter used by two rules is fine
    with pytest.raises(FirewallConfigError, match="two counters would be named 'x'"):
        out.counter("x", "another meaning")


def test_1_a_zone_named_like_a_link_keeps_its_own_drop_counter():
    """'drop_forward_link-x' was both the counter of zone 'link-x' and of link 'x'."""
    variables = gateway_vars()
    ruleset = compile_ruleset("cityhall-gw", variables, settings())
    zone_counters = [n for n in ruleset["counters"] if n.startswith("drop_forward_zone_")]
    link_counters = [n for n in ruleset["counters"] if n.startswith("drop_forward_link_")]
    assert zone_counters and link_counters
    assert not set(zone_counters) & set(link_counters)


def test_1_reserved_words_are_refused_for_every_kind_of_name(tmp_path):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    path = inventory / "group_vars/all/teleworkers.yml"
    path.write_text(path.read_text().replace("  finance: {", "  internet: {", 1))
    with pytest.raises(InvalidInventoryError) as raised:
        load_model(inventory)
    assert any("reserved word" in e.message for e in raised.value.errors)


# --- 2. an inventory given as a file ------------------------------------------------------


def ansible_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return {**env, "ANSIBLE_FORCE_COLOR": "0"}


def test_2_a_file_source_is_validated_like_its_directory(tmp_path):
    case = {"edits": [{"file": "municipality.yml", "replace": "10.20.0.0/16 ", "with": "x "}]}
    inventory = broken_copy(case, tmp_path / "inv")
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory / "kastro_hosts.yml"),
            str(ROOT / "playbooks/validate.yml"),
        ],
        cwd=tmp_path,  # not the repository: the playbook must find everything by itself
        capture_output=True,
        text=True,
        check=False,
        env=ansible_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "is not a CIDR network" in proc.stdout


def test_2_without_a_model_the_playbooks_fail_closed(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    somehost:\n")
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(ROOT / "playbooks/site.yml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=ansible_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "has a group_vars/all with the municipality's model" in proc.stdout
    assert "Gathering Facts" not in proc.stdout


def test_2_playbooks_find_their_roles_from_any_directory(tmp_path):
    proc = subprocess.run(
        [
            "ansible-playbook",
            "--syntax-check",
            "-i",
            str(EXAMPLE),
            str(ROOT / "playbooks/site.yml"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=ansible_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- 5. secrets directories ---------------------------------------------------------------


def render_default(role: str, variable: str, municipality: dict) -> str:
    """The role's default for `variable`, rendered with Kastro's shared filters (plugins/filter)."""
    module = importlib.util.spec_from_file_location(
        "kastro_filters", ROOT / "plugins" / "filter" / "kastro.py"
    )
    assert module and module.loader
    filters = importlib.util.module_from_spec(module)
    module.loader.exec_module(filters)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(filters.FilterModule().filters())
    text = yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text())[variable]
    return env.from_string(text).render(kastro_host={"municipality": municipality})


@pytest.mark.parametrize(
    ("role", "variable"),
    [
        ("telework", "telework_secrets_dir"),
        ("links", "links_secrets_dir"),
        ("monitoring", "monitoring_secrets_dir"),
        ("monitor", "monitor_monitoring_secrets_dir"),
    ],
)
def test_5_two_greek_municipalities_get_two_secrets_directories(role, variable):
    first = {"name": "Δήμος Κάστρου", "domain": "dimos-kastrou.gr"}
    second = {"name": "Δήμος Πύργου", "domain": "pyrgos.gr"}
    a, b = (render_default(role, variable, m) for m in (first, second))
    assert a != b
    part = {"monitor": "monitoring"}.get(role, role)
    assert a.endswith(f"/dimos-kastrou.gr/{part}") and b.endswith(f"/pyrgos.gr/{part}")


def test_5_a_sensor_without_the_model_forwards_nothing_and_others_refuse():
    """The monitor role runs on a sensor alone (molecule/monitor): no secrets directory, so
    no forwarder; every other role's secrets need the domain."""
    assert render_default("monitor", "monitor_monitoring_secrets_dir", {}) == ""
    with pytest.raises(AnsibleFilterError, match="domain"):
        render_default("monitoring", "monitoring_secrets_dir", {"name": "Δήμος Κάστρου"})


def test_5_no_secrets_directory_without_a_domain():
    with pytest.raises(SecretsDirError, match="domain"):
        secrets_dir({"name": "Δήμος Κάστρου"}, "telework")
    with pytest.raises(SecretsDirError, match="domain"):
        secrets_dir({"name": "x", "domain": "../../etc"}, "telework")


PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: {role}
        tasks_from: keys.yml
"""


@pytest.mark.parametrize(
    ("role", "variable"), [("links", "links_secrets_dir"), ("telework", "telework_secrets_dir")]
)
def test_5_a_directory_of_another_municipality_is_refused(tmp_path, role, variable):
    """The roles' own key tasks, on the controller: the first municipality marks the
    directory, the same one may come back, a second one is refused before any key."""
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(role=role))
    directory = tmp_path / "shared" / role

    def run(domain: str) -> subprocess.CompletedProcess[str]:
        extra = {
            "kastro_host": {
                "municipality": {"domain": domain},
                "inventory": str(tmp_path / "none"),
            },
            variable: str(directory),
            "links_rekey": False,
            "telework_rekey": [],
            "telework_people": [],
        }
        return subprocess.run(
            ["ansible-playbook", str(play), "-e", json.dumps(extra)],
            capture_output=True,
            text=True,
            check=False,
            env={**ansible_env(), "ANSIBLE_ROLES_PATH": str(ROOT / "roles")},
            stdin=subprocess.DEVNULL,
        )

    assert run("dimos-kastrou.gr").returncode == 0
    assert run("dimos-kastrou.gr").returncode == 0  # the owner again: fine
    refused = run("pyrgos.gr")
    assert refused.returncode != 0
    assert "holds the secrets of dimos-kastrou.gr" in refused.stdout + refused.stderr
    marker = tmp_path / "shared" / MARKER
    assert marker.read_text() == "dimos-kastrou.gr\n"
    assert oct(marker.stat().st_mode)[-3:] == "600"


# --- 6 (host-independent part) and 7: the firewall helper -----------------------------------


def test_6b_confirm_with_nothing_pending_fails(tmp_path, monkeypatch, capsys):
    firewall = helper("kastro_firewall")
    monkeypatch.setattr(firewall, "PENDING", tmp_path / "pending.json")
    monkeypatch.setattr(firewall, "LAST_ROLLBACK", tmp_path / "last-rollback.json")
    assert firewall.main(["confirm"]) == 1
    assert "nothing is pending" in capsys.readouterr().err


def test_6b_confirm_of_another_change_fails(tmp_path, monkeypatch, capsys):
    firewall = helper("kastro_firewall")
    pending = tmp_path / "pending.json"
    pending.write_text(json.dumps({"file": "/x", "sha256": "a" * 64, "deadline": 0}))
    monkeypatch.setattr(firewall, "PENDING", pending)
    assert firewall.main(["confirm", "--sha256", "b" * 64]) == 1
    assert "nothing was confirmed" in capsys.readouterr().err
    assert pending.exists()


INJECTIONS = [
    [
        "block",
        "203.0.113.9",
        "--timeout",
        "1h }; flush chain inet kastro input; add element inet kastro blocklist_v4 { 203.0.113.8",
    ],
    [
        "block",
        "fe80::1%x }; flush chain inet kastro input; add element inet kastro "
        "blocklist_v6 { fe80::2",
    ],
    ["block", "203.0.113.9/32 timeout 1s"],
    ["unblock", "fe80::1%eth0"],
]


@needs_nft
@pytest.mark.parametrize("argv", INJECTIONS, ids=["timeout", "scope-id", "space", "unblock"])
def test_7_nft_text_cannot_be_injected_through_block_arguments(argv, tmp_path):
    """In a private network namespace with the gateway's real ruleset: the helper refuses the
    value and the input chain keeps every rule."""
    text = render(compile_ruleset("cityhall-gw", gateway_vars(), settings()))
    ruleset = tmp_path / "kastro.nft"
    ruleset.write_text(text)
    script = tmp_path / "attack.sh"
    archive = build_archive(tmp_path / "kastro-host.pyz")["path"]  # as the hosts run it
    launcher = (
        f"import sys; sys.path.insert(0, {archive!r}); "
        "from kastro.host.firewall import main; sys.exit(main())"
    )
    script.write_text(
        "set -u\n"
        f"nft -f {ruleset}\n"
        'before=$(nft -a list chain inet kastro input | grep -c "handle")\n'
        f'{sys.executable} -I -c "{launcher}" "$@"; rc=$?\n'
        'after=$(nft -a list chain inet kastro input | grep -c "handle")\n'
        'echo "rc=$rc before=$before after=$after"\n'
    )
    proc = subprocess.run(
        ["unshare", "--net", "bash", str(script), *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    result = dict(part.split("=") for part in proc.stdout.split())
    assert result["rc"] == "1", proc.stdout + proc.stderr
    assert result["before"] == result["after"] != "0"


def test_7_the_links_helper_refuses_values_that_are_not_what_the_role_writes():
    links = helper("kastro_links")
    good = {"links": [{"name": "a-b", "interface": "wl-b", "mtu": 1420, "peer_ipv4": "10.0.0.1"}]}
    links.check_config(good)
    for key, bad in (
        ("interface", "eth0 root handle 1: htb; reboot"),
        ("interface", "a-very-long-interface-name"),
        ("peer_ipv4", "10.0.0.1 -c 100000"),
        ("mtu", "1420 mtu 9000"),
    ):
        broken = copy.deepcopy(good)
        broken["links"][0][key] = bad
        with pytest.raises(links.ConfigValueError, match=key):
            links.check_config(broken)


# --- 8. anchored patterns -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["iot\n", "tw-0006\n", "tw-0006\r\n"])
def test_8_names_with_a_trailing_newline_are_refused(value):
    from kastro.inventory.model import check_name

    assert check_name(value) is not None
    assert check_name(value.strip()) is None


def test_8_secret_making_shell_tasks_quote_and_hide_their_output():
    for path in ROOT.glob("roles/*/tasks/*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            shell = task.get("ansible.builtin.shell")
            if not shell:
                continue
            cmd = shell["cmd"] if isinstance(shell, dict) else shell
            if any(word in cmd for word in ("genkey", "genpsk", "qrencode", ".key")):
                assert task.get("no_log") is True, f"{path.name}: {task['name']}"
                for expression in cmd.split("{{")[1:]:
                    assert "| quote" in expression.split("}}")[0], f"{path.name}: {task['name']}"


# --- 10. YAML bombs, recursion, a damaged plan ----------------------------------------------

BOMB = "kastro_buildings:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB, "expands to more than"),
        ("kastro_buildings: &x\n  a: *x\n", "alias that contains itself"),
        ("kastro_buildings: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
        ("kastro_buildings: " + "{a: " * 60 + "1" + "}" * 60 + "\n", "nested more than"),
    ],
    ids=["alias-bomb", "recursive-alias", "deep-flow", "deep-mapping"],
)
def test_10_hostile_yaml_is_one_error_in_bounded_time(tmp_path, text, message, capsys):
    inventory = tmp_path / "inv"
    (inventory / "group_vars/all").mkdir(parents=True)
    (inventory / "group_vars/all/model.yml").write_text(text)
    assert main(["validate", str(inventory)]) == 1
    err = capsys.readouterr().err
    assert message in err and "model.yml" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "content",
    [
        b"kastro_plan: [1, 2]\n",
        b"kastro_plan:\n  zones: [a]\n",
        b"\xff\xfe\x00garbage",
        BOMB.encode(),
    ],
    ids=["list", "section-list", "not-utf8", "bomb"],
)
def test_10_a_damaged_plan_is_one_error_naming_the_file(tmp_path, content):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    (inventory / "group_vars/all/kastro_plan.yml").write_bytes(content)
    with pytest.raises(InvalidInventoryError) as raised:
        read_previous_plan(inventory)
    (error,) = raised.value.errors
    assert error.file.endswith("kastro_plan.yml") and "restore it" in error.fix


def test_10_a_directory_or_dangling_link_in_group_vars_is_an_error(tmp_path, capsys):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    (inventory / "group_vars/all/extra.yml").mkdir()
    (inventory / "group_vars/all/gone.yml").symlink_to(tmp_path / "missing.yml")
    assert main(["validate", str(inventory)]) == 1
    err = capsys.readouterr().err
    assert err.count("is a directory or a broken link") == 2


# --- 11. malformed pcapng -----------------------------------------------------------------


def block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
IDB = block(1, struct.pack("<HHI", 1, 0, 65535))
IDB_TSRESOL_0 = block(
    1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HHB3x", 9, 1, 0) + b"\0" * 4
)


@pytest.mark.parametrize(
    "content",
    [
        SHB + IDB + block(6, b"\0" * 8),  # enhanced packet block shorter than its 20 bytes
        struct.pack("<II", 0x0A0D0D0A, 8) + struct.pack("<I", 0x1A2B3C4D),  # SHB length < 12
        SHB + IDB_TSRESOL_0 + block(6, struct.pack("<IIIII", 0, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0)),
    ],
    ids=["short-epb", "short-shb", "huge-timestamp"],
)
def test_11_malformed_pcapng_is_a_clean_error_or_a_skipped_block(tmp_path, content, capsys):
    path = tmp_path / "bad.pcapng"
    path.write_bytes(content)
    try:
        frames = [f for batch in read_file(path) for f in batch]
    except CaptureError as exc:
        assert str(path) in str(exc)
    else:
        assert frames == []
    code = main(["monitor", "--pcap", str(path)])
    assert code in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


# --- 12. OSPF keys ------------------------------------------------------------------------


def test_12_ospf_keys_come_from_a_csprng_at_full_length():
    tasks = yaml.safe_load((ROOT / "roles/links/tasks/keys.yml").read_text())
    makers = [t for t in tasks if ".ospf" in json.dumps(t) and "copy" in json.dumps(t)]
    (task,) = makers
    content = task["ansible.builtin.copy"]["content"]
    assert "ansible.builtin.password" in content and "length=16" in content
    assert task["no_log"] is True
    assert not any("tr -dc" in json.dumps(t) for t in tasks)


# --- 13. validation gaps ------------------------------------------------------------------


def test_13_interfaces_come_from_the_model_or_host_vars_not_both(tmp_path):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars/kep-gw.yml").write_text("kastro_interfaces:\n  zones: {staff: eth1}\n")
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(inventory)
    (error,) = raised.value.errors
    assert error.path == "kastro_interfaces" and error.file.endswith("host_vars/kep-gw.yml")
    assert "kastro_ports" in error.fix


def test_13_kastro_interfaces_in_host_vars_are_validated(tmp_path):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    (inventory / "group_vars/all/ports.yml").unlink()  # the interfaces written by hand instead
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars/cityhall-gw.yml").write_text(
        "kastro_interfaces:\n"
        "  zone: {staff: eth1}\n"  # typo of zones:
        "  links: {cityhall-kep: eth9, nowhere: eth8}\n"
        "  wan: 'eth0; reboot'\n"
    )
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(inventory)
    paths = {e.path for e in raised.value.errors}
    assert {
        "kastro_interfaces.zone",
        "kastro_interfaces.links.nowhere",
        "kastro_interfaces.wan",
    } <= paths


def test_13_the_compiler_refuses_a_zone_without_its_interface():
    variables = gateway_vars()
    zones = dict(variables["kastro_interfaces"]["zones"])
    zones.pop("guest")
    broken = {**variables, "kastro_interfaces": {**variables["kastro_interfaces"], "zones": zones}}
    with pytest.raises(FirewallConfigError, match=r"kastro_interfaces.zones.guest: is missing"):
        compile_ruleset("cityhall-gw", broken, settings())


def test_13_own_zone_sources_arriving_on_a_link_are_dropped():
    ruleset = compile_ruleset("cityhall-gw", gateway_vars(), settings())
    link_rules = [r for r in ruleset["prerouting"] if "spoofed_link_" in r]
    staff = gateway_vars()["kastro_plan"]["zones"]["cityhall.staff"]
    assert link_rules and all(r.endswith("drop") for r in link_rules)
    assert any(staff["ipv4"] in r for r in link_rules)
    assert any(staff["ipv6"] in r for r in link_rules)


def test_13_guests_never_reach_the_voip_class():
    from kastro.links.config import gateway_config

    variables = gateway_vars()
    defaults = yaml.safe_load((ROOT / "roles/links/defaults/main.yml").read_text())
    config = gateway_config(
        "cityhall-gw",
        variables,
        {
            "qos_classes": defaults["links_qos_classes"],
            "qos_marking": defaults["links_qos_marking"],
            "qos_untrusted_zone_kinds": defaults["links_qos_untrusted_zone_kinds"],
        },
    )
    rules = config["qos_ruleset"].splitlines()
    guest_v4 = variables["kastro_plan"]["zones"]["cityhall.guest"]["ipv4"]
    last_ef = max(i for i, r in enumerate(rules) if "dscp set ef" in r)
    guest_reset = [i for i, r in enumerate(rules) if guest_v4 in r and "dscp set cs0" in r]
    assert guest_reset and min(guest_reset) > last_ef  # later rules win


# --- 14. tracebacks -----------------------------------------------------------------------

PCAP = ROOT / "tests/data/pcaps/normal.pcap"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics-address", "not-an-address", "--metrics-port", "9999"], "--metrics-address"),
        (["--metrics-file", "/proc/kastro/metrics.prom"], "--metrics-file"),
        (["--metrics-file", "/"], "--metrics-file"),
    ],
    ids=["bad-address", "unwritable-file", "directory"],
)
def test_14_bad_monitor_outputs_are_messages(argv, message, capsys):
    assert main(["monitor", "--pcap", str(PCAP), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_14_metrics_port_in_use_is_a_message(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["monitor", "--pcap", str(PCAP), "--metrics-port", str(port)]) == 2
    assert f"--metrics-port {port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"alerts": 5}, "alerts: 5 must be a mapping"),
        ({"detectors": {"arpspoof": {"dhcp_servers": ["10.0.0.300"]}}}, "dhcp_servers[0]"),
        ({"detectors": {"portscan": {"max_tracked": 0}}}, "at least 1"),
        ({"detectors": {"arpspoof": {"dhcp_servers": [5]}}}, "dhcp_servers"),
    ],
    ids=["alerts-number", "bad-dhcp-server", "max-tracked-zero", "dhcp-server-number"],
)
def test_14_bad_monitor_config_fails_check_config(config, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(config)
    assert message in str(raised.value)


def test_14_filter_without_tcpdump_is_a_message(monkeypatch):
    from monitors.capture import compile_bpf

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CaptureError, match="needs tcpdump"):
        compile_bpf("tcp port 22")


def test_14_unwritable_outputs_of_kastro_commands_are_messages(tmp_path, capsys):
    target = tmp_path / "ro"
    shutil.copytree(EXAMPLE, target)
    assert main(["inventory", "export", str(target), "-o", str(tmp_path / "no/such/dir.csv")]) == 1
    assert "no/such/dir.csv" in capsys.readouterr().err
    (target / "kastro_hosts.yml").unlink()  # the plan must write it again
    target.chmod(0o500)
    try:
        if os.access(target, os.W_OK):  # root ignores the mode: make the file unwritable instead
            (target / "kastro_hosts.yml").mkdir()
        assert main(["apply", str(target)]) == 1
        err = capsys.readouterr().err
        assert "kastro_hosts.yml" in err and "Traceback" not in err
    finally:
        target.chmod(0o700)


def test_14_missing_graphviz_keeps_the_policy_output(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code = main(["plan", str(EXAMPLE), "--check", "--policy", "--graph", str(tmp_path / "t.svg")])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Policy:" in out and "Graphviz is not installed" in err and "usage:" not in err


# --- 15. EVE line breaks ------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085"])
def test_15_unicode_line_breaks_never_split_an_alert(char):
    line = eve_line({"dns": {"rrname": f"a{char}b.example"}})
    assert len(line.splitlines()) == 1
    assert json.loads(line)["dns"]["rrname"] == f"a{char}b.example"


def test_14_an_unwritable_graph_is_a_message(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "topology.dot"
    assert main(["plan", str(EXAMPLE), "--check", "--graph", str(target)]) == 1
    err = capsys.readouterr().err
    assert "topology.dot" in err and "Traceback" not in err
    assert main(["show", "graph", "-i", str(EXAMPLE), str(target)]) == 1
    err = capsys.readouterr().err
    assert "topology.dot" in err and "Traceback" not in err


def test_8_ansible_host_cannot_become_an_ssh_option(tmp_path):
    """The class of finding 8: ansible_host is handed to ssh as its host argument, where
    '-oProxyCommand=...' would run a command on the controller."""
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    path = inventory / "group_vars/all/buildings.yml"
    text = path.read_text()
    path.write_text(
        text.replace(
            "      cityhall-gw: {role: gateway}",
            "      cityhall-gw: {role: gateway, ansible_host: '-oProxyCommand=touch /tmp/x'}",
            1,
        )
    )
    with pytest.raises(InvalidInventoryError) as raised:
        load_model(inventory)
    assert any(e.path.endswith("cityhall-gw.ansible_host") for e in raised.value.errors)


def test_10_the_value_bound_is_per_file_not_per_variable(tmp_path, capsys):
    """Two variables of about 134,000 values each (one an alias of the other) are 268,000 in
    one file: over MAX_VALUES, though each alone is under it."""
    levels = "  a: &a [x, x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcd", "bcde", strict=True)
    )
    text = f"kastro_buildings: &all\n{levels}kastro_links: *all\n"
    inventory = tmp_path / "inv"
    (inventory / "group_vars/all").mkdir(parents=True)
    (inventory / "group_vars/all/model.yml").write_text(text)
    assert main(["validate", str(inventory)]) == 1
    assert "expands to more than" in capsys.readouterr().err
