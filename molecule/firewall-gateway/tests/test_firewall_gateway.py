"""Scenario 1: the ruleset on a real gateway and server, read back with `nft -j`."""

import json
import re

import pytest

testinfra_hosts = ["hall-gw", "web"]


def ruleset(host) -> list[dict]:
    return json.loads(host.check_output("nft -j list ruleset"))["nftables"]


def objects(host, kind: str, table: str = "kastro") -> dict[str, dict]:
    return {
        item[kind]["name"]: item[kind]
        for item in ruleset(host)
        if kind in item and item[kind].get("table") == table
    }


def rules_of(host, chain: str) -> list[dict]:
    return [
        item["rule"]
        for item in ruleset(host)
        if "rule" in item and item["rule"]["table"] == "kastro" and item["rule"]["chain"] == chain
    ]


def test_only_our_table_and_the_foreign_one_survived(host):
    tables = {(t["table"]["family"], t["table"]["name"]) for t in ruleset(host) if "table" in t}
    assert ("inet", "kastro") in tables
    assert ("ip", "foreign") in tables, "the role removed a table that is not its own"
    foreign = objects(host, "set", table="foreign")
    assert foreign["banned"]["elem"] == ["198.51.100.66"]


def test_base_chains_drop_by_default(host):
    chains = objects(host, "chain")
    assert chains["input"]["policy"] == "drop"
    assert chains["input"]["hook"] == "input"
    assert chains["forward"]["policy"] == "drop"
    assert chains["prerouting"]["prio"] == -300  # raw: before conntrack


def test_management_is_the_first_rule_after_loopback(host):
    first = rules_of(host, "input")[:2]
    assert '"lo"' in json.dumps(first[0]["expr"])
    text = json.dumps(first[1]["expr"])
    assert '"eth0"' in text and "accept" in text


def test_soc_sets_have_timeouts_and_come_first(host):
    sets = objects(host, "set")
    for name in ("blocklist_v4", "blocklist_v6", "isolated_v4", "isolated_v6"):
        assert set(sets[name]["flags"]) == {"interval", "timeout"}
    assert {"prefix": {"addr": "10.40.0.80", "len": 29}} in sets["allowlist_v4"]["elem"]
    if host.backend.get_hostname() == "hall-gw":
        forward = [json.dumps(r["expr"]) for r in rules_of(host, "forward")]
        assert all("blocklist" in r for r in forward[:4]), "blocklists must be checked first"
    first = [json.dumps(r["expr"]) for r in rules_of(host, "input")[:6]]
    assert any("blocklist_v4" in r for r in first)


def test_gateway_zone_pairs_nat_and_antispoofing(host):
    if host.backend.get_hostname() != "hall-gw":
        pytest.skip("gateway only")
    chains = objects(host, "chain")
    assert "from_hall.staff_to_hall.servers" in chains
    assert "from_hall.guest_to_internet" in chains
    assert "from_hall.guest_to_hall.servers" not in chains  # the policy names no such pair
    pair = json.dumps(rules_of(host, "from_hall.staff_to_hall.servers"))
    assert "policy1_hall.staff_to_hall.servers" in pair and '"dport"' in pair
    counters = objects(host, "counter")
    assert "policy1_hall.staff_to_hall.servers" in counters
    assert "staff use the intranet" in counters["policy1_hall.staff_to_hall.servers"]["comment"]
    assert "masquerade" in json.dumps(rules_of(host, "postrouting"))
    prerouting = json.dumps(rules_of(host, "prerouting"))
    assert '"z-staff"' in prerouting and "10.40.0.32" in prerouting  # staff's own prefix only
    assert "fd4b:4000:4000:3::" in prerouting  # and IPv6 is not forgotten
    log = json.dumps(rules_of(host, "forward"))
    assert "kastro forward drop staff: " in log


def test_server_accepts_what_the_policy_allows(host):
    if host.backend.get_hostname() != "web":
        pytest.skip("server only")
    text = json.dumps(rules_of(host, "input"))
    assert "10.40.0.32" in text and "policy1_hall.staff" in text
    assert "10.40.0.0" not in text.replace("10.40.0.0/20", "")  # nothing for guest


def test_files_are_private_and_boot_unit_enabled(host):
    for path in ("/etc/kastro/firewall/candidate.nft", "/etc/kastro/firewall/active.nft"):
        f = host.file(path)
        assert f.mode == 0o600 and f.user == "root"
    assert host.service("kastro-firewall").is_enabled
    status = json.loads(host.check_output("kastro-firewall status"))
    assert status["table_loaded"] and status["pending"] is None


def test_no_rollback_timer_left_armed(host):
    out = host.run("systemctl list-timers --all --no-legend kastro-firewall-rollback.timer")
    assert "kastro-firewall-rollback" not in out.stdout


def test_block_and_unblock_keep_the_allowlist(host):
    out = host.run("kastro-firewall block 10.40.0.81")
    assert out.rc == 1 and "allowlist" in out.stderr
    host.check_output("kastro-firewall block 203.0.113.9 --timeout 10m")
    blocked = json.loads(host.check_output("kastro-firewall blocked"))["blocklist_v4"]
    entry = next(b for b in blocked if b["val"] == "203.0.113.9")
    assert 0 < entry["expires"] <= 600
    host.check_output("kastro-firewall unblock 203.0.113.9")
    blocked = json.loads(host.check_output("kastro-firewall blocked"))["blocklist_v4"]
    assert "203.0.113.9" not in [b["val"] for b in blocked]


def test_blocklist_survives_a_reload(host):
    host.check_output("kastro-firewall block 203.0.113.10 --timeout 1h")
    host.check_output(
        "kastro-firewall apply /etc/kastro/firewall/candidate.nft --rollback-after 60"
        " && kastro-firewall confirm"
    )
    blocked = json.loads(host.check_output("kastro-firewall blocked"))["blocklist_v4"]
    assert "203.0.113.10" in [b["val"] for b in blocked]
    host.check_output("kastro-firewall unblock 203.0.113.10")


def listener(host, port: int) -> str:
    """ADDRESS:PORT the exporter listens on (one listener, never every address)."""
    rows = host.check_output(f"ss -Hltn 'sport = :{port}'").splitlines()
    assert len(rows) == 1, rows
    address = rows[0].split()[3]
    assert not address.startswith(("0.0.0.0", "*", "[::]")), address
    return address


def test_exporter_serves_the_counters(host):
    address = listener(host, 9552)
    body = host.check_output(
        'python3 -c "import urllib.request;'
        f"print(urllib.request.urlopen('http://{address}/metrics').read().decode())\""
    )
    assert "kastro_firewall_up 1.0" in body
    assert 'kastro_firewall_packets_total{comment="dropped input",counter="drop_input"}' in body
    assert 'kastro_firewall_set_elements{set="blocklist_v4"}' in body
    assert "kastro_firewall_collect_timestamp_seconds" in body
    server = host.check_output(
        "systemctl show -p DynamicUser,AmbientCapabilities,CapabilityBoundingSet "
        "kastro-firewall-exporter"
    )
    assert "DynamicUser=yes" in server and "cap_net_admin" not in server.lower()
    collector = host.check_output(
        "systemctl show -p DynamicUser,AmbientCapabilities,RestrictAddressFamilies "
        "kastro-firewall-metrics"
    )
    assert "DynamicUser=yes" in collector and "cap_net_admin" in collector.lower()
    assert "AF_INET" not in collector  # the privileged half has no network socket


def test_the_clock_keeps_time_of_day_rules_on_local_time(host):
    """kastro-firewall-clock.timer runs the helper's clock every quarter of an hour; this lab's
    policy has no schedule, so it reloads nothing, and it runs confined (no network)."""
    assert host.service("kastro-firewall-clock.timer").is_enabled
    assert host.service("kastro-firewall-clock.timer").is_running
    run = host.run("systemctl start kastro-firewall-clock.service")
    assert run.rc == 0, run.stderr
    journal = host.check_output("journalctl -u kastro-firewall-clock.service -o cat -n 5")
    assert '"reloaded": false' in journal and "no time-of-day rules" in journal
    unit = host.check_output(
        "systemctl show -p CapabilityBoundingSet,RestrictAddressFamilies,ProtectSystem "
        "kastro-firewall-clock.service"
    )
    assert "cap_net_admin" in unit.lower() and "AF_INET" not in unit and "strict" in unit
    score = host.check_output(
        "systemd-analyze security --no-pager kastro-firewall-clock.service | tail -1"
    )
    print(score)
    level = re.search(r"kastro-firewall-clock.service: (\d+\.\d+)", score)
    assert level and float(level.group(1)) <= 4.0, score  # systemd-analyze's "OK" band
