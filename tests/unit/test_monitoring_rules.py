"""#17: what Prometheus scrapes and the alert rules, compiled from the example municipality.

The rule files are checked and unit-tested by the real promtool (Debian's prometheus package),
including the rules generated from the topology: a spur link cut holds back the school's host
alerts, one broken link of the ring cuts nobody off.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kastro.inventory.project import plan_inventory, write_plan
from kastro.monitoring import prometheus, rules, targets, topology
from tests.inventory_helpers import without_ports

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool: apt install prometheus")


def whole(inventory: Path) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    return variables


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """promtool, with a guard against a hang only: the unit tests of the rules evaluate every
    rule over up to 40 h of samples (about 100 s of one core on an idle machine, more beside
    the lab in CI: 120 s was once not enough)."""
    assert PROMTOOL, "promtool is not installed (make deps installs Debian's prometheus)"
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=600, check=False
    )


def test_every_managed_host_has_node_and_firewall_targets_with_its_labels():
    variables = whole(EXAMPLE)
    jobs = targets.scrape_jobs(variables)
    hosts = variables["kastro_plan"]["hosts"]
    managed = sorted(h for h, e in hosts.items() if e["role"] in ("gateway", "server", "sensor"))
    assert [g["labels"]["host"] for g in jobs["node"]] == managed
    assert [g["labels"]["host"] for g in jobs["firewall"]] == managed
    assert [g["labels"]["host"] for g in jobs["monitor"]] == ["sensor1"]
    assert [g["labels"]["host"] for g in jobs["telework"]] == ["cityhall-gw"]
    gateways = sorted(h for h, e in hosts.items() if e["role"] == "gateway")
    assert [g["labels"]["host"] for g in jobs["links"]] == gateways
    fileserver = next(g for g in jobs["node"] if g["labels"]["host"] == "fileserver")
    assert fileserver == {
        "targets": [f"{hosts['fileserver']['ipv4']}:9100"],
        "labels": {
            "municipality": "Dimos Kastrou",
            "building": "cityhall",
            "zone": "servers",
            "role": "server",
            "host": "fileserver",
        },
    }
    # A gateway's exporters listen on its management address.
    kep = next(g for g in jobs["links"] if g["labels"]["host"] == "kep-gw")
    assert kep["targets"] == [f"{hosts['kep-gw']['interfaces']['management']['ipv4']}:9554"]


def test_the_exporter_ports_are_the_roles_defaults():
    for job, role, variable in [
        ("monitor", "monitor", "monitor_metrics_port"),
        ("telework", "telework", "telework_metrics_port"),
        ("links", "links", "links_exporter_port"),
    ]:
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        assert targets.PORTS[job] == defaults[variable], variable


def test_services_the_policy_opens_on_servers_are_probed():
    probes = targets.service_probes(whole(EXAMPLE))
    seen = {(p["labels"]["host"], p["labels"]["service"], p["labels"]["module"]) for p in probes}
    # staff -> cityhall.servers: web, dns, file-sharing, printing; iot -> mqtt
    for host in ("fileserver", "intranet"):
        assert (host, "web", "http") in seen and (host, "web", "https") in seen
        assert (host, "dns", "dns") in seen
        assert (host, "file-sharing", "tcp_connect") in seen
        assert (host, "mqtt", "tcp_connect") in seen
    # No UDP-only service is probed by TCP (sip's udp/5060; rtp's range).
    assert not any(p["targets"][0].endswith(":5060") for p in probes)
    assert len(probes) == len({(p["labels"]["host"], p["targets"][0]) for p in probes})


def test_each_link_end_is_probed_from_the_monitoring_host():
    variables = whole(EXAMPLE)
    probes = targets.link_probes(variables)
    assert len(probes) == 2 * len(variables["kastro_plan"]["links"])
    assert {p["labels"]["link"] for p in probes} == set(variables["kastro_plan"]["links"])


def test_cut_sets_of_the_example_ring_and_spurs():
    plan = whole(EXAMPLE)["kastro_plan"]
    sets = topology.cut_sets(plan, "cityhall")
    # The school hangs off the library by one link; the ring needs two breaks.
    assert sets["school"][0] == ("library-school",)
    assert sets["village"][0] == ("deya-village",)
    assert all(len(s) == 2 for s in sets["kep"])
    assert ("cityhall-kep", "deya-cityhall") in sets["kep"]
    assert "cityhall" not in sets
    # Minimal: no set contains a smaller one.
    for found in sets.values():
        for a in found:
            assert not any(set(b) < set(a) for b in found)


def test_a_name_that_is_not_safe_never_reaches_promql():
    variables = whole(EXAMPLE)
    variables["kastro_plan"] = {
        **variables["kastro_plan"],
        "links": {'x"} or vector(1) #': {"ends": {"a": {}, "b": {}}}},
    }
    with pytest.raises(rules.MonitoringModelError, match="may not go into an alert rule"):
        rules.topology_rules(variables)


@needs_promtool
def test_the_fixed_rules_pass_promtool_check_and_their_unit_tests():
    checked = promtool("check", "rules", str(rules.STATIC_RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    files = ("kastro.test.yml", "kastro-slow.test.yml")  # the second: rules that wait for days
    tested = promtool("test", "rules", *files, cwd=ROOT / "tests" / "promtool")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every rule has a test that fires it and one evaluation where it does not fire.
    cases = [
        case
        for name in files
        for case in yaml.safe_load((ROOT / "tests" / "promtool" / name).read_text())["tests"]
    ]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {r["alert"] for g in rules.static_rules()["groups"] for r in g["rules"] if "alert" in r}
    assert firing == names
    # A rule without an empty expectation of its own is still checked not to fire: each
    # firing test also feeds a host or link that must not appear in exp_alerts.
    assert quiet <= names
    for group in rules.static_rules()["groups"]:
        for rule in (r for r in group["rules"] if "alert" in r):
            notes = rule["annotations"]
            assert notes["summary_el"] and notes["summary_en"], rule["alert"]
            assert notes["runbook"] == f"docs/monitoring.md#{rule['alert'].lower()}"


def test_every_alert_has_its_runbook_section():
    headings = {
        line.removeprefix("### ").strip().lower()
        for line in (ROOT / "docs" / "monitoring.md").read_text().splitlines()
        if line.startswith("### ")
    }
    static = [r for g in rules.static_rules()["groups"] for r in g["rules"] if "alert" in r]
    generated = topology.cut_off_rules(whole(EXAMPLE)) + topology.failover_rules(whole(EXAMPLE))
    for rule in static + generated:
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor in headings, rule["alert"]


@needs_promtool
def test_generated_topology_rules_fire_only_when_a_building_is_cut_off(tmp_path):
    generated = tmp_path / "topology.rules.yml"
    generated.write_text(rules.dump(rules.topology_rules(whole(EXAMPLE))))
    checked = promtool("check", "rules", str(generated))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ring = ["cityhall-kep", "kep-library", "library-deya", "deya-cityhall"]
    spurs = ["library-school", "deya-village"]

    def series(down: set[str]) -> list[dict[str, str]]:
        return [
            {"series": f'kastro_link_up{{link="{link}", host="{end}"}}',
             "values": "0x10" if link in down else "1x10"}
            for link in ring + spurs
            for end in ("a-gw", "b-gw")
        ]  # fmt: skip

    generated_rules = {r["labels"]["building"]: r for r in topology.cut_off_rules(whole(EXAMPLE))}

    def cut(*buildings: str) -> list[dict[str, Any]]:
        return [{"exp_labels": generated_rules[b]["labels"],
                 "exp_annotations": generated_rules[b]["annotations"]}
                for b in buildings]  # fmt: skip

    failover = {r["labels"]["link"]: r for r in topology.failover_rules(whole(EXAMPLE))}
    assert sorted(failover) == sorted(ring)  # a spur's loss is never a failover

    def failed_over(*links: str) -> list[dict[str, Any]]:
        return [{"exp_labels": failover[k]["labels"], "exp_annotations": failover[k]["annotations"]}
                for k in links]  # fmt: skip

    tests = [
        # The school's one link: the school only.
        (series({"library-school"}), cut("school"), []),
        # One break in the ring: everyone is still reachable; traffic failed over.
        (series({"kep-library"}), [], failed_over("kep-library")),
        # Two breaks in the ring cut kep off, and the library with the school behind it.
        (series({"cityhall-kep", "library-deya"}), cut("kep", "library", "school"), []),
        # Nothing down.
        (series(set()), [], []),
    ]
    spec = {"rule_files": [str(generated)], "evaluation_interval": "1m", "tests": []}
    for input_series, expected, failovers in tests:
        spec["tests"].append(
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": "KastroBuildingCutOff",
                        "exp_alerts": expected,
                    },
                    {"eval_time": "2m", "alertname": "KastroLinkFailover", "exp_alerts": failovers},
                ],
            }
        )
    test_file = tmp_path / "topology.test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    tested = promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_adding_a_building_adds_its_targets_and_its_cut_off_rule(tmp_path):
    inventory = tmp_path / "town"
    without_ports(shutil.copytree(EXAMPLE, inventory))
    buildings_file = inventory / "group_vars" / "all" / "buildings.yml"
    links_file = inventory / "group_vars" / "all" / "links.yml"
    buildings = yaml.safe_load(buildings_file.read_text())
    buildings["kastro_buildings"]["pool"] = {
        "description": "Κολυμβητήριο - swimming pool",
        "zones": {"staff": {"hosts": 5}, "management": {"hosts": 4}},
        "hosts": {"pool-gw": {"role": "gateway"}},
    }
    buildings_file.write_text(yaml.safe_dump(buildings, allow_unicode=True))
    links = yaml.safe_load(links_file.read_text())
    links["kastro_links"]["school-pool"] = {
        "ends": ["school", "pool"],
        "medium": "fibre",
        "capacity_mbps": 100,
    }
    links_file.write_text(yaml.safe_dump(links))
    write_plan(inventory, plan_inventory(inventory))

    before, after = whole(EXAMPLE), whole(inventory)
    node_before = {g["labels"]["host"] for g in targets.scrape_jobs(before)["node"]}
    node_after = {g["labels"]["host"] for g in targets.scrape_jobs(after)["node"]}
    assert node_after - node_before == {"pool-gw"}
    assert "pool-gw" in {g["labels"]["host"] for g in targets.scrape_jobs(after)["links"]}
    cut_before = {r["labels"]["building"] for r in topology.cut_off_rules(before)}
    cut_after = {r["labels"]["building"] for r in topology.cut_off_rules(after)}
    assert cut_after - cut_before == {"pool"}
    pool = next(r for r in topology.cut_off_rules(after) if r["labels"]["building"] == "pool")
    # Behind the school: the school's link or the pool's own cuts it off.
    assert 'link="school-pool"' in pool["expr"] and 'link="library-school"' in pool["expr"]


@needs_promtool
def test_promtool_accepts_the_generated_configuration_with_its_files(tmp_path):
    variables = whole(EXAMPLE)
    (tmp_path / "targets").mkdir()
    (tmp_path / "rules").mkdir()
    for name, content in prometheus.target_files(variables).items():
        (tmp_path / "targets" / name).write_text(json.dumps(content))
    (tmp_path / "rules" / "kastro.yml").write_text(rules.STATIC_RULES.read_text())
    (tmp_path / "rules" / "topology.yml").write_text(rules.dump(rules.topology_rules(variables)))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus.config(variables, str(tmp_path))))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 46 rules found" in checked.stdout
    probes = json.loads((tmp_path / "targets" / "blackbox-links.json").read_text())
    assert {p["labels"]["module"] for p in probes} == {"icmp"}
