"""Rules for one host or device rather than a zone (issue #25): `from: scada-hmi`, a printer
shared across zones. A device gets a planned, stable address with `fixed_address: true`; the
firewall matches the host's /32 and /128; reports, risk checks and `show host` know it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import netaddr
import pytest
import yaml

from kastro.cli import main
from kastro.firewall.ruleset import compile_ruleset
from kastro.inventory.errors import InvalidInventoryError
from kastro.inventory.project import policy_matrix, validate_inventory
from tests.inventory_helpers import EXAMPLE
from tests.unit.test_firewall_ruleset import hosts_and_vars, render, settings

BUILDINGS = "group_vars/all/buildings.yml"
POLICY = "group_vars/all/policy.yml"
RULES = """
  - from: [staff, voip]
    to: printer-1
    services: [printing]
    comment: the first-floor printer, shared by every building's staff and phones
  - from: scada-hmi
    to: cityhall.servers
    services: [web]
    comment: the HMI alone reports to the historian
"""


def _edit(inventory: Path, name: str, old: str, new: str) -> None:
    path = inventory / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    for device in ("printer-1: {zone: staff,", "scada-hmi: {zone: scada,"):
        _edit(inventory, BUILDINGS, device, device + " fixed_address: true,")
    path = inventory / POLICY
    path.write_text(path.read_text(encoding="utf-8") + RULES, encoding="utf-8")
    assert main(["apply", "-i", str(inventory)]) == 0
    return inventory


def _plan(inventory: Path) -> dict:
    text = (inventory / "group_vars/all/kastro_plan.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["kastro_plan"]


def test_a_device_with_a_fixed_address_gets_one_in_its_zone_that_stays(shared: Path):
    plan = _plan(shared)
    printer = plan["devices"]["printer-1"]
    assert printer["zone"] == "cityhall.staff"
    assert netaddr.IPAddress(printer["ipv4"]) in netaddr.IPNetwork(
        plan["zones"]["cityhall.staff"]["ipv4"]
    )
    taken = {h["ipv4"] for h in plan["hosts"].values() if "ipv4" in h}
    assert printer["ipv4"] not in taken and plan["devices"]["scada-hmi"]["zone"] == "deya.scada"
    # Another device asking for one moves nothing that was planned.
    _edit(
        shared, BUILDINGS, "mayor-pc: {zone: staff,", "mayor-pc: {zone: staff, fixed_address: true,"
    )
    assert main(["apply", "-i", str(shared)]) == 0
    after = _plan(shared)
    assert after["devices"]["printer-1"] == printer and after["hosts"] == plan["hosts"]
    assert after["devices"]["mayor-pc"]["ipv4"] != printer["ipv4"]


def test_the_example_without_such_devices_plans_no_devices_section():
    assert "devices" not in _plan(EXAMPLE)


def test_the_firewalls_match_exactly_the_named_hosts(shared: Path):
    planned = validate_inventory(shared)
    plan = planned.result.data
    printer, hmi = plan["devices"]["printer-1"]["ipv4"], plan["devices"]["scada-hmi"]["ipv4"]
    historian = plan["zones"]["cityhall.servers"]["ipv4"]
    hall = _ruleset(shared, "cityhall-gw")
    assert f"ip daddr {printer}/32 jump from_kep.staff_to_printer-1" in hall
    assert f"ip saddr {hmi}/32 ip daddr {historian} jump from_scada-hmi_to_cityhall.servers" in hall
    deya = _ruleset(shared, "deya-gw")
    assert f"ip saddr {hmi}/32 ip daddr {historian} jump from_scada-hmi_to_cityhall.servers" in deya
    assert "printer-1" in deya  # deya's staff reach the printer through their own gateway
    assert "scada-hmi" not in _ruleset(shared, "kep-gw")  # touches neither end
    for text in (hall, deya):
        _nft_check(text)


def test_reports_and_risk_checks_know_the_host(shared: Path, capsys):
    planned = validate_inventory(shared)
    row = next(r for r in policy_matrix(planned.model) if r["from \\ to"] == "iot")
    assert "web @cityhall (from scada-hmi only)" in row["servers"]
    staff = next(r for r in policy_matrix(planned.model) if r["from \\ to"] == "staff")
    assert "printing @printer-1" in staff["staff"]
    assert main(["show", "host", "printer-1", "-i", str(shared)]) == 0
    out = capsys.readouterr().out
    assert _plan(shared)["devices"]["printer-1"]["ipv4"] in out and "rule 12:" in out
    # Publishing the HMI is the internet reaching an iot zone: risky.
    path = shared / "group_vars/all/published.yml"
    path.write_text(
        path.read_text() + "  hmi: {host: scada-hmi, services: [web], ipv4: 198.51.100.9}\n",
        "utf-8",
    )
    with pytest.raises(InvalidInventoryError) as raised:
        validate_inventory(shared)
    assert "the internet reaches a iot zone" in raised.value.errors[0].message


def _ruleset(inventory: Path, host: str) -> str:
    variables = dict(hosts_and_vars(inventory))[host]
    return render(compile_ruleset(host, variables, settings()))


def _nft_check(text: str) -> None:
    if not shutil.which("nft") or not shutil.which("unshare"):
        pytest.skip("nft and unshare are needed to check the ruleset")
    proc = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", "-"], input=text, text=True, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
