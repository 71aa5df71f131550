"""Split-tunnel routes and OpenVPN addresses for the example municipality's teleworkers."""

from pathlib import Path

import netaddr
import pytest
import yaml

from kastro.telework.access import (
    allowed_ips,
    certificates_to_revoke,
    openvpn_address,
    openvpn_subnets,
    peers,
    people,
)

ROOT = Path(__file__).resolve().parents[2]


def example() -> dict:
    variables: dict = {}
    for path in sorted((ROOT / "inventory/example/group_vars/all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    return variables


def test_split_tunnel_holds_the_allowed_zones_and_the_pool_only():
    v = example()
    assert allowed_ips(v, "finance") == [
        "10.20.2.0/26",  # cityhall.servers
        "10.20.4.192/26",  # the finance pool
        "fd4b:5354:2000:3::/64",
        "fd4b:5354:2000:19::/64",
    ]


def test_a_kind_means_every_zone_of_that_kind():
    routes = allowed_ips(example(), "it-admins")
    management = [
        z["ipv4"] for z in example()["kastro_plan"]["zones"].values() if z["kind"] == "management"
    ]
    covered = netaddr.IPSet(routes)
    assert all(netaddr.IPNetwork(m) in covered for m in management)
    assert netaddr.IPNetwork("10.20.0.128/25") not in covered  # staff zones are not theirs


def test_full_tunnel_on_request_or_when_the_internet_is_allowed():
    v = example()
    assert allowed_ips(v, "finance", full_tunnel=True) == ["0.0.0.0/0", "::/0"]
    v["kastro_policy"].append(
        {"from": "teleworkers.finance", "to": "internet", "services": ["web"]}
    )
    assert allowed_ips(v, "finance") == ["0.0.0.0/0", "::/0"]


def test_openvpn_addresses_sit_in_the_upper_half_of_the_group_pool():
    v = example()
    plan = v["kastro_plan"]
    for tw, entry in plan["teleworkers"].items():
        pool = netaddr.IPNetwork(plan["vpn_pools"][entry["group"]]["ipv4"])
        ovpn = openvpn_address(v, tw)
        address = netaddr.IPAddress(ovpn["address"])
        assert address in pool and address in netaddr.IPNetwork(ovpn["subnet"])
        assert int(address) - int(pool.first) >= pool.size // 2
        assert address != netaddr.IPAddress(entry["ipv4"])
    subnets = openvpn_subnets(v)
    assert len({s["subnet"] for s in subnets.values()}) == len(subnets)


def test_openvpn_refuses_an_address_that_would_leave_the_pool():
    v = example()
    v["kastro_plan"]["teleworkers"]["tw-0006"]["ipv4"] = "10.20.4.151"  # upper half of a /28
    with pytest.raises(ValueError, match="pool_size"):
        openvpn_address(v, "tw-0006")


def test_people_are_the_enabled_planned_teleworkers_in_id_order():
    v = example()
    v["kastro_teleworkers"] = list(reversed(v["kastro_teleworkers"]))
    chosen = [p["id"] for p in people(v)]
    states = {p["id"]: p.get("state", "enabled") for p in v["kastro_teleworkers"]}
    assert chosen == sorted(chosen)
    assert chosen == sorted(i for i, s in states.items() if s == "enabled")
    assert "tw-0002" not in chosen  # revoked


def test_unplanned_teleworkers_get_no_tunnel():
    v = example()
    v["kastro_teleworkers"] = [*v["kastro_teleworkers"], {"id": "tw-9999", "group": "finance"}]
    assert "tw-9999" not in [p["id"] for p in people(v)]


def test_peers_read_generated_public_keys_and_keep_brought_ones(tmp_path):
    v = example()
    for person in people(v):
        if "public_key" not in person:
            (tmp_path / f"{person['id']}.pub").write_text(f"KEY-{person['id']}\n")
    rows = {r["id"]: r for r in peers(v, str(tmp_path))}
    assert sorted(rows) == [p["id"] for p in people(v)]
    for person in people(v):
        row = rows[person["id"]]
        assert row["own_key"] == ("public_key" in person)
        assert row["public_key"] == person.get("public_key", f"KEY-{person['id']}")
        assert row["ipv4"] == v["kastro_plan"]["teleworkers"][person["id"]]["ipv4"]


def test_a_missing_generated_key_is_an_error(tmp_path):
    with pytest.raises(OSError):
        peers(example(), str(tmp_path))


def test_certificates_to_revoke():
    issued = [f"/pki/issued/{n}.crt" for n in ("server", "tw-0001", "tw-0002", "tw-0003")]
    assert certificates_to_revoke(issued, ["tw-0001", "tw-0003"], []) == ["tw-0002"]
    assert certificates_to_revoke(issued, ["tw-0001", "tw-0003"], ["tw-0003"]) == [
        "tw-0002",
        "tw-0003",
    ]
    assert certificates_to_revoke(["/pki/issued/server.crt"], [], []) == []
