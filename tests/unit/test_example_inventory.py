"""The example municipality: valid, planned, drawable, exportable, and the plan stays stable."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import netaddr
import pytest
import yaml

from kastro.cli import main
from kastro.inventory.errors import InvalidInventoryError
from kastro.inventory.graph import topology_dot
from kastro.inventory.project import (
    LEGACY_HOSTS_MARK,
    describe_policy,
    plan_inventory,
    validate_inventory,
)
from tests.inventory_helpers import EXAMPLE, broken_copy, without_ports


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    target = tmp_path / "example"
    shutil.copytree(EXAMPLE, target)
    return target


def plan_of(inventory: Path) -> dict:
    return yaml.safe_load((inventory / "group_vars/all/kastro_plan.yml").read_text())["kastro_plan"]


def test_example_validates_and_its_committed_plan_is_current():
    planned = validate_inventory(EXAMPLE)
    assert planned.stale == []
    assert len(planned.model.buildings) >= 5
    assert len(planned.model.teleworker_groups) == 3


def test_example_has_a_ring_and_a_spur():
    model = validate_inventory(EXAMPLE).model
    degree: dict[str, int] = {}
    for link in model.links.values():
        for end in link.ends:
            degree[end] = degree.get(end, 0) + 1
    assert sum(1 for d in degree.values() if d == 1) >= 1  # a spur ends in a building with one link
    assert len(model.links) >= len(model.buildings)  # more links than a tree: a cycle exists


def test_example_allocations_do_not_overlap_and_stay_inside_the_supernet():
    plan = plan_of(EXAMPLE)
    blocks = [netaddr.IPNetwork(z["ipv4"]) for z in plan["zones"].values()]
    blocks += [netaddr.IPNetwork(link["ipv4"]) for link in plan["links"].values()]
    blocks += [netaddr.IPNetwork(p["ipv4"]) for p in plan["vpn_pools"].values()]
    blocks += [netaddr.IPNetwork(r["ipv4"] + "/32") for r in plan["router_ids"].values()]
    supernet = netaddr.IPNetwork("10.20.0.0/16")
    assert all(b in supernet for b in blocks)
    assert netaddr.IPSet(blocks).size == sum(b.size for b in blocks)


def test_adding_a_building_changes_no_existing_allocation(example_copy: Path):
    without_ports(example_copy)
    before = plan_of(example_copy)
    buildings = example_copy / "group_vars/all/buildings.yml"
    buildings.write_text(
        buildings.read_text()
        + "\n  museum:\n    zones:\n      staff: {hosts: 12}\n      cctv: {hosts: 30}\n"
        "    hosts:\n      museum-gw: {role: gateway}\n"
    )
    links = example_copy / "group_vars/all/links.yml"
    links.write_text(
        links.read_text()
        + "  kep-museum:\n    ends: [kep, museum]\n    medium: radio\n    capacity_mbps: 100\n"
    )
    assert main(["apply", str(example_copy)]) == 0
    after = plan_of(example_copy)
    for section in ("zones", "links", "router_ids", "vpn_pools", "hosts", "teleworkers"):
        for key, entry in before[section].items():
            assert after[section][key] == entry, f"{section}.{key} moved"
    assert "museum.cctv" in after["zones"]
    assert "kep-museum" in after["links"]
    assert main(["validate", str(example_copy)]) == 0


def test_renumber_moves_only_the_named_zone(example_copy: Path):
    servers = example_copy / "group_vars/all/buildings.yml"
    servers.write_text(servers.read_text().replace("servers: {hosts: 40}", "servers: {hosts: 100}"))
    with pytest.raises(InvalidInventoryError):
        validate_inventory(example_copy)
    before = plan_of(example_copy)
    assert (
        main(["apply", str(example_copy), "--renumber", "kastro_plan.zones.cityhall.servers"]) == 0
    )
    after = plan_of(example_copy)
    assert netaddr.IPNetwork(after["zones"]["cityhall.servers"]["ipv4"]).size - 3 >= 100
    for key, entry in before["zones"].items():
        if key != "cityhall.servers":
            assert after["zones"][key] == entry
    # The servers' hosts follow their zone.
    assert netaddr.IPAddress(after["hosts"]["fileserver"]["ipv4"]) in netaddr.IPNetwork(
        after["zones"]["cityhall.servers"]["ipv4"]
    )


def test_a_renumbering_shows_every_address_that_moves_old_to_new(example_copy: Path, capsys):
    before = plan_of(example_copy)
    servers = example_copy / "group_vars/all/buildings.yml"  # outgrows its /26
    servers.write_text(servers.read_text().replace("servers: {hosts: 40}", "servers: {hosts: 100}"))
    key = "kastro_plan.zones.cityhall.servers"
    assert main(["plan", "-i", str(example_copy), "--renumber", key]) == 0
    out = capsys.readouterr().out
    after = plan_inventory(example_copy, frozenset([key])).result.data
    old, new = (
        before["zones"]["cityhall.servers"]["ipv4"],
        after["zones"]["cityhall.servers"]["ipv4"],
    )
    assert old != new and f"  ~ zones.cityhall.servers ipv4 {old} -> {new} (renumbered)" in out
    for host in ("fileserver", "intranet", "mailrelay"):
        was, now = before["hosts"][host]["ipv4"], after["hosts"][host]["ipv4"]
        assert f"  ~ hosts.{host} ipv4 {was} -> {now} (renumbered)" in out
    gateway = after["hosts"]["cityhall-gw"]["interfaces"]["servers"]["ipv4"]
    assert "hosts.cityhall-gw.interfaces.servers ipv4 " in out and gateway in out
    # Nothing else moves, and nothing given out before is listed as new.
    assert out.count(" ~ ") == 5 and " + " not in out


@pytest.mark.parametrize(
    ("percent", "hosts", "prefix"),
    [
        (25, 40, 26),
        (0, 40, 26),
        (25, 60, 25),
        (0, 60, 26),
        (25, 4, 28),
        (0, 4, 29),
        (25, 5, 28),
        (100, 30, 26),
    ],
)
def test_new_zones_get_room_to_grow(example_copy: Path, percent, hosts, prefix):
    """zone_headroom_percent: 40 devices + 25 % = 50 (+3: network, broadcast, gateway) fits a
    /26; 60 + 15 = 75 needs a /25 where 60 alone fits a /26; a zone of 4 gets 4 spare (a /28
    where 4 alone fits a /29)."""
    municipality = example_copy / "group_vars/all/municipality.yml"
    text = municipality.read_text().replace(
        "  mtu: 1500\n", f"  mtu: 1500\n  zone_headroom_percent: {percent}\n"
    )
    municipality.write_text(text)
    buildings = example_copy / "group_vars/all/buildings.yml"
    buildings.write_text(
        buildings.read_text().replace(
            "      iot: {hosts: 20, description: smart-classroom displays and sensors}\n",
            f"      iot: {{hosts: 20, description: smart-classroom displays and sensors}}\n"
            f"      lab: {{kind: staff, hosts: {hosts}}}\n",
        )
    )
    ports = example_copy / "group_vars/all/ports.yml"
    ports.write_text(
        ports.read_text().replace("staff: 10, iot: 60}", "staff: 10, iot: 60, lab: 70}")
    )
    planned = plan_inventory(example_copy)
    assert netaddr.IPNetwork(planned.result.data["zones"]["school.lab"]["ipv4"]).prefixlen == prefix
    assert planned.result.added[0].startswith("zones.school.lab ipv4")


def test_plan_shows_what_apply_writes_and_writes_nothing(example_copy: Path, capsys):
    """Terraform's convention (issue #25): plan shows, apply writes."""
    hosts = example_copy / "kastro_hosts.yml"
    hosts.write_text("all: {}\n")
    assert main(["plan", "-i", str(example_copy)]) == 0
    out = capsys.readouterr().out
    assert f"run 'kastro apply -i {example_copy}'" in out and "nothing written" in out
    assert hosts.read_text() == "all: {}\n"
    assert main(["apply", "-i", str(example_copy)]) == 0
    assert "wrote" in capsys.readouterr().out and "fileserver" in hosts.read_text()
    assert main(["apply", "-i", str(example_copy)]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert main(["plan", "-i", str(example_copy)]) == 0
    assert "the plan is current" in capsys.readouterr().out


def test_plan_check_reports_a_stale_plan(example_copy: Path):
    assert main(["plan", "--check", str(example_copy)]) == 0
    (example_copy / "kastro_hosts.yml").write_text("all: {}\n")
    assert main(["plan", "--check", str(example_copy)]) == 1


def test_a_new_inventory_without_a_plan_is_told_to_make_one(example_copy: Path):
    """Not "out of date": nothing is wrong, `kastro apply` is the next step (issue #25)."""
    (example_copy / "group_vars/all/kastro_plan.yml").unlink()
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(example_copy)
    (error,) = raised.value.errors
    assert "does not exist yet" in error.message and "out of date" not in error.message
    assert error.fix.startswith(f"run 'kastro apply -i {example_copy}' to make it")


def test_plan_leaves_the_admins_own_hosts_and_groups_alone(example_copy: Path):
    """Issue #25: a windows_pcs group of the admin's own was lost when plan rewrote hosts.yml.
    The generated hosts live in kastro_hosts.yml; the admin's hosts.yml is never written, and
    Ansible reads both."""
    own = "all:\n  children:\n    windows_pcs:\n      hosts:\n        pc-dimarxos: {}\n"
    (example_copy / "hosts.yml").write_text(own)
    (example_copy / "kastro_hosts.yml").write_text("all: {}\n")  # stale: plan rewrites it
    assert main(["apply", str(example_copy)]) == 0
    assert (example_copy / "hosts.yml").read_text() == own
    assert "fileserver" in (example_copy / "kastro_hosts.yml").read_text()
    proc = subprocess.run(
        [Path(sys.executable).with_name("ansible-inventory"), "-i", str(example_copy), "--graph"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "@windows_pcs" in proc.stdout and "pc-dimarxos" in proc.stdout
    assert "@gateways" in proc.stdout


def test_the_playbooks_never_target_the_admins_own_devices(example_copy: Path):
    """Issue #25: a Windows PC or a SCADA HMI listed in the admin's own file is in `all`; every
    play but the validation (which runs on the controller) targets kastro_managed."""
    (example_copy / "hosts.yml").write_text(
        "all:\n  children:\n    windows_pcs:\n      hosts:\n        pc-dimarxos: {}\n"
    )
    root = Path(__file__).resolve().parents[2]
    for playbook in ("site.yml", "monitoring.yml", "endpoint.yml", "firewall.yml"):
        proc = subprocess.run(
            [Path(sys.executable).with_name("ansible-playbook"), "-i", str(example_copy),
             "--list-hosts", str(root / "playbooks" / playbook)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg")},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-800:] + proc.stderr[-800:]
        plays = proc.stdout.split("  play #")[1:]
        assert "Validate" in plays[0] and "pc-dimarxos" in plays[0]
        assert all("pc-dimarxos" not in play for play in plays[1:]), (playbook, proc.stdout)
        assert any("fileserver" in play for play in plays[1:])


def test_plan_replaces_the_hosts_file_an_older_kastro_wrote(example_copy: Path, capsys):
    legacy = example_copy / "hosts.yml"
    legacy.write_text(LEGACY_HOSTS_MARK + " Do not edit by hand:\n---\nall: {}\n")
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(example_copy)
    assert "older 'kastro plan'" in raised.value.errors[0].message
    assert main(["apply", str(example_copy)]) == 0
    assert not legacy.exists() and "removed" in capsys.readouterr().out
    validate_inventory(example_copy)


def test_hosts_inventory_groups_follow_from_the_model():
    hosts = yaml.safe_load((EXAMPLE / "kastro_hosts.yml").read_text())["all"]
    assert set(hosts["children"]["gateways"]["hosts"]) == {
        "cityhall-gw",
        "kep-gw",
        "library-gw",
        "school-gw",
        "deya-gw",
        "village-gw",
        "platanos-gw",
    }
    assert hosts["hosts"]["fileserver"]["kastro_zone"] == "servers"
    assert "fileserver" in hosts["children"]["building_cityhall"]["hosts"]


def test_policy_reads_as_plain_sentences():
    model = validate_inventory(EXAMPLE).model
    lines = describe_policy(model)
    rules = [line for line in lines if not line.startswith("the internet may reach")]
    assert rules[0].startswith(
        "staff zones (cityhall, deya, kep, library, platanos, school, village) may reach"
    )
    assert (
        "teleworkers of group 'finance' may reach zone cityhall.servers for web (tcp/80, tcp/443)"
        in ("\n".join(lines))
    )
    assert lines[-1] == "Everything else between zones is refused."


def test_policy_names_zones_when_a_building_has_two_of_a_kind(tmp_path: Path):
    """Issue #25: "servers zones (dimarcheio, dimarcheio)" named one building twice."""
    servers = "      servers: {hosts: 40}\n"
    dmz = servers + "      dmz: {hosts: 8, kind: servers}\n"
    port = "cctv: 40, guest: 50}"  # the new zone on a VLAN of its own at the city hall
    case = {
        "edits": [
            {"file": "buildings.yml", "replace": servers, "with": dmz},
            {"file": "ports.yml", "replace": port, "with": "cctv: 40, guest: 50, dmz: 60}"},
        ]
    }
    inventory = broken_copy(case, tmp_path / "inv")
    main(["apply", str(inventory)])
    lines = describe_policy(validate_inventory(inventory).model)
    assert "servers zones (cityhall.dmz, cityhall.servers)" in "\n".join(lines)


def test_a_risky_rule_with_a_reason_validates_and_the_policy_says_so(tmp_path: Path):
    reason = "vendor's remote support until 2027-03, decided by the mayor"
    rule = f"  - from: guest\n    to: deya.scada\n    services: [web]\n    accept_risk: {reason}"
    rule += "\n"
    case = {"edits": [{"file": "policy.yml", "replace": "kastro_policy:\n",
                       "with": "kastro_policy:\n" + rule}]}  # fmt: skip
    inventory = broken_copy(case, tmp_path / "inv")
    main(["apply", str(inventory)])
    lines = describe_policy(validate_inventory(inventory).model)
    rules = [line for line in lines if not line.startswith("the internet may reach")]
    assert rules[0] == (
        "guest zones (cityhall, kep, library) may reach zone deya.scada for web (tcp/80, "
        "tcp/443)  [ΡΙΣΚΟ / RISK accepted: vendor's remote support until 2027-03, decided by "
        "the mayor]"
    )


def test_a_published_service_says_who_reaches_it_where():
    from kastro.inventory.project import policy_matrix

    lines = describe_policy(validate_inventory(EXAMPLE).model)
    assert lines[0].startswith(
        "the internet may reach intranet (cityhall.servers) on 198.51.100.3 and "
        "2001:db8:100::3 for web (tcp/80, tcp/443) [published: website]  (at most 100/second "
        "per source)"
    )
    internet = next(r for r in policy_matrix(validate_inventory(EXAMPLE).model)
                    if r["from \\ to"] == "internet")  # fmt: skip
    assert internet["servers"] == "web [intranet], smtp [mailrelay] @cityhall"


def test_topology_picture_renders(tmp_path: Path):
    planned = validate_inventory(EXAMPLE)
    dot = topology_dot(planned.model, planned.result.data)
    assert '"cityhall" -- "link:cityhall:kep:' in dot
    out = tmp_path / "topology.svg"
    assert main(["plan", str(EXAMPLE), "--graph", str(out)]) == 0
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_asset_export_csv_and_json():
    from kastro.inventory.assets import export_assets

    planned = validate_inventory(EXAMPLE)
    rows = list(
        csv.DictReader(io.StringIO(export_assets(planned.model, planned.result.data, "csv")))
    )
    data = json.loads(export_assets(planned.model, planned.result.data, "json"))
    assert rows == data
    fileserver = next(r for r in rows if r["name"] == "fileserver")
    assert fileserver["type"] == "host" and fileserver["zone"] == "cityhall.servers"
    assert {r["type"] for r in rows} == {"building", "zone", "link", "uplink", "host", "device"}
    # Every description and register field the model holds is kept (#21).
    assert fileserver["description"] == "Samba file server"
    assert fileserver["services"] == "file-sharing printing"
    assert (fileserver["criticality"], fileserver["vendor"], fileserver["os"]) == (
        "high",
        "Dell",
        "Debian 12",
    )
    hmi = next(r for r in rows if r["name"] == "scada-hmi")
    assert hmi["managed"] == "no (documented)" and hmi["zone"] == "deya.scada"
    assert hmi["legal_entity"].startswith("ΔΕΥΑ Κάστρου")  # from its building
    iot = next(r for r in rows if r["name"] == "school.iot")
    assert iot["description"] == "20 devices; smart-classroom displays and sensors"
    radio = next(r for r in rows if r["name"] == "library-deya")
    assert (radio["supplier"], radio["contract"]) == ("Example Radio Links ΑΕ", "ΣΥΜΒ-2024-117")
    page = export_assets(planned.model, planned.result.data, "html")
    assert "Μητρώο παγίων" in page and "plc-pump-1" in page and "Μαρία Παπαδοπούλου" in page


def test_policy_matrix_shows_who_may_reach_what():
    from kastro.inventory.project import policy_matrix

    rows = {row["from \\ to"]: row for row in policy_matrix(validate_inventory(EXAMPLE).model)}
    assert rows["staff"]["servers"] == "web, dns, file-sharing, printing @cityhall"
    assert rows["guest"]["internet"] == "web, dns"
    assert rows["guest"]["servers"] == "-"
    assert rows["teleworkers.it-admins"]["management"] == "ssh, web, metrics, ping"
    published = {key: value for key, value in rows["internet"].items() if value != "-"}
    assert published == {
        "from \\ to": "internet",
        "servers": "web [intranet], smtp [mailrelay] @cityhall",
    }


def test_the_matrix_says_when_only_one_buildings_zone_may_reach(tmp_path: Path):
    """Issue #25: a row is a zone kind, so deya's staff reaching the SCADA zone read as every
    building's staff."""
    from kastro.inventory.project import policy_matrix

    rule = "  - from: deya.staff\n    to: deya.scada\n    services: [mqtt]\n"
    case = {"edits": [{"file": "policy.yml", "replace": "kastro_policy:\n",
                       "with": "kastro_policy:\n" + rule}]}  # fmt: skip
    inventory = broken_copy(case, tmp_path / "inv")
    main(["apply", str(inventory)])
    rows = {row["from \\ to"]: row for row in policy_matrix(validate_inventory(inventory).model)}
    assert rows["staff"]["iot"] == "mqtt @deya (from deya only)"


def test_every_model_field_is_documented():
    """The model's field tables (kastro.inventory.model) and docs/inventory.md name the same
    fields: a field added to a table and not to the docs fails here."""
    from kastro.inventory import model

    docs = (Path(__file__).resolve().parents[2] / "docs" / "inventory.md").read_text(
        encoding="utf-8"
    )
    tables = {
        name: table
        for name, table in vars(model).items()
        if name.endswith("_FIELDS") and isinstance(table, dict)
    }
    assert len(tables) >= 10
    missing = sorted(
        f"{table}.{field}"
        for table, fields in tables.items()
        for field in fields
        if f"`{field}`" not in docs
    )
    assert not missing, f"not in docs/inventory.md: {missing}"
