"""`kastro show host NAME`: a host's place, addresses, groups, roles and policy, from the model,
the plan and site.yml's own plays."""

from __future__ import annotations

import subprocess
import sys

from kastro.cli import main
from kastro.inventory.project import validate_inventory
from kastro.inventory.show import host_groups, roles_for, show_host
from tests.inventory_helpers import EXAMPLE


def test_a_server_gets_its_address_groups_roles_and_the_rules_of_its_zone():
    planned = validate_inventory(EXAMPLE)
    lines = show_host(planned.model, planned.result.data, "fileserver")
    text = "\n".join(lines)
    assert lines[0] == "fileserver: server in building cityhall, zone cityhall.servers"
    assert f"addresses: {planned.result.data['hosts']['fileserver']['ipv4']}," in text
    assert "groups: backup_clients, building_cityhall, kastro_managed, servers" in text
    roles = [role for _play, role in roles_for(host_groups(planned.model, "fileserver"), "x")]
    assert roles == [
        "base", "endpoint", "firewall", "node_exporter", "updates", "event_shipping", "backup"
    ]  # fmt: skip
    assert "rule 8: teleworkers of group 'finance' may reach zone cityhall.servers" in text
    assert "rule 6:" not in text  # guests to the internet: not this zone


def test_a_gateway_gets_every_zone_of_its_building_and_the_vpn():
    planned = validate_inventory(EXAMPLE)
    text = "\n".join(show_host(planned.model, planned.result.data, "cityhall-gw"))
    assert "in zone guest:" in text and "telework  (" in text and "links  (" in text
    assert "monitor  (" not in text  # the packet monitor is the sensors'


def test_an_unknown_host_lists_the_known_ones(capsys):
    assert main(["show", "host", "nope", "-i", str(EXAMPLE)]) == 2
    assert "the hosts are: cityhall-gw, deya-gw, fileserver" in capsys.readouterr().err


def test_a_reader_that_leaves_early_is_no_error():
    proc = subprocess.run(
        f"{sys.executable} -m kastro.cli show host cityhall-gw | head -1",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.stdout.startswith("cityhall-gw: gateway") and "Broken pipe" not in proc.stderr
