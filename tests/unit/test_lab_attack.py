"""The demo's containment step: which gateway address the attacker's probe aims at."""

from __future__ import annotations

from pathlib import Path

from kastro.inventory.project import read_previous_plan
from kastro.lab import attack

ROOT = Path(__file__).resolve().parents[2]


def test_the_probe_aims_at_the_servers_zone_of_the_uplink_gateway() -> None:
    for inventory in (ROOT / "inventory" / "example", ROOT / "tests" / "data" / "lab-small"):
        address = attack._gateway_address(inventory)
        hosts = read_previous_plan(inventory)["hosts"]
        owner = [
            (name, zone)
            for name, entry in hosts.items()
            for zone, iface in (entry.get("interfaces") or {}).items()
            if iface.get("ipv4") == address
        ]
        assert len(owner) == 1 and owner[0][1] == "servers", (inventory, owner)
        assert hosts[owner[0][0]]["role"] == "gateway"
