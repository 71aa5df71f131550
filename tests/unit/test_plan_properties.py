"""Property-based tests of the address plan over random valid municipalities (hypothesis)."""

from itertools import combinations
from pathlib import Path

import netaddr
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kastro.inventory.loader import Source
from kastro.inventory.model import (
    ZONE_KINDS,
    Building,
    Host,
    Link,
    Model,
    Municipality,
    Teleworker,
    TeleworkerGroup,
    Zone,
)
from kastro.inventory.plan import make_plan

SECTIONS = ("zones", "links", "router_ids", "vpn_pools", "hosts", "teleworkers")


def building(name: str, zones: list[tuple[str, int]], servers: int, city_hall: bool) -> Building:
    zone_map = {z: Zone(name, z, z, hosts, None) for z, hosts in zones}
    hosts = {f"{name}-gw": Host(f"{name}-gw", name, "gateway", None, None, None)}
    first_zone = zones[0][0]
    for i in range(servers):
        hosts[f"{name}-srv{i}"] = Host(f"{name}-srv{i}", name, "server", first_zone, None, None)
    return Building(name, "", city_hall, zone_map, hosts)


@st.composite
def municipalities(draw):
    prefix = draw(st.integers(min_value=14, max_value=20))
    second = draw(st.integers(min_value=0, max_value=255))
    v4 = netaddr.IPNetwork(f"10.{second}.0.0/{prefix}").cidr
    with_v6 = draw(st.booleans())
    v6 = (netaddr.IPNetwork("fd00:1234:5600::/48"),) if with_v6 else ()
    count = draw(st.integers(min_value=1, max_value=7))
    buildings = {}
    for i in range(count):
        kinds = draw(st.lists(st.sampled_from(ZONE_KINDS), min_size=1, max_size=4, unique=True))
        servers = draw(st.integers(min_value=0, max_value=3))
        # Servers sit in the first zone, which must count them among its devices.
        zones = [
            (k, draw(st.integers(min_value=max(1, servers) if n == 0 else 1, max_value=300)))
            for n, k in enumerate(kinds)
        ]
        buildings[f"b{i}"] = building(f"b{i}", zones, servers, city_hall=i == 0)
    links = {}
    for i in range(1, count):  # a random spanning tree, plus random extra links
        parent = draw(st.integers(min_value=0, max_value=i - 1))
        links[f"l{parent}-{i}"] = Link(
            f"l{parent}-{i}", (f"b{parent}", f"b{i}"), "fibre", 1000, 100, False, 1500
        )
    for a, b in draw(
        st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=3)
    ):
        if a < b and f"l{a}-{b}" not in links:
            links[f"l{a}-{b}"] = Link(
                f"l{a}-{b}", (f"b{a}", f"b{b}"), "radio", 100, 1000, True, 1500
            )
    groups = {
        f"g{i}": TeleworkerGroup(f"g{i}", "", draw(st.sampled_from((8, 16, 64))))
        for i in range(draw(st.integers(0, 3)))
    }
    people = []
    for i in range(draw(st.integers(0, 12))):
        if groups:
            group = draw(st.sampled_from(sorted(groups)))
            if sum(1 for p in people if p.group == group) < groups[group].capacity:
                people.append(Teleworker(f"tw-{i:04d}", f"P{i}", group, None, "enabled"))
    return Model(
        municipality=Municipality("M", "m.example.gr", (v4,), v6, (), 1500),
        buildings=buildings,
        links=links,
        teleworker_groups=groups,
        teleworkers=people,
    )


def plan(model: Model, previous: dict | None = None) -> dict | None:
    src = Source(inventory=Path("."))
    result = make_plan(model, src, previous)
    if result is None:
        # The only acceptable failure for a valid model is a supernet that is too small.
        assert all("has no room left" in e.message for e in src.errors), src.errors
        return None
    return result.data


def blocks(plan_data: dict, family: str) -> list[netaddr.IPNetwork]:
    out = []
    for section in ("zones", "links", "vpn_pools"):
        out += [netaddr.IPNetwork(e[family]) for e in plan_data[section].values() if family in e]
    out += [netaddr.IPNetwork(e[family]) for e in plan_data["router_ids"].values() if family in e]
    return out


@settings(max_examples=150, deadline=None)  # correctness, not speed: the machine is shared
@given(municipalities())
def test_no_overlaps_and_everything_inside_the_supernet(model: Model):
    data = plan(model)
    assume(data is not None)
    assert model.municipality is not None
    for family, supernets in (
        ("ipv4", model.municipality.supernets_v4),
        ("ipv6", model.municipality.supernets_v6),
    ):
        nets = blocks(data, family)
        for net in nets:
            assert any(net in s for s in supernets), f"{net} outside {supernets}"
        for a, b in combinations(nets, 2):
            assert a.last < b.first or b.last < a.first, f"{a} overlaps {b}"


@settings(max_examples=150, deadline=None)  # correctness, not speed: the machine is shared
@given(municipalities())
def test_every_zone_holds_its_devices_and_hosts_sit_inside_their_zone(model: Model):
    data = plan(model)
    assume(data is not None)
    for zone in model.zones:
        net = netaddr.IPNetwork(data["zones"][zone.key]["ipv4"])
        assert net.size - 3 >= zone.hosts
    seen = set()
    for host in data["hosts"].values():
        if host["role"] == "gateway":
            continue
        net = netaddr.IPNetwork(data["zones"][host["zone"]]["ipv4"])
        address = netaddr.IPAddress(host["ipv4"])
        assert address in net and address not in (net.network, net[1], net.broadcast)
        assert address not in seen
        seen.add(address)


@settings(max_examples=100, deadline=None)  # correctness, not speed: the machine is shared
@given(municipalities(), st.integers(min_value=1, max_value=200), st.sampled_from(ZONE_KINDS))
def test_adding_elements_never_changes_existing_allocations(model: Model, hosts: int, kind: str):
    first = plan(model)
    assume(first is not None)
    assert first is not None
    # Grow the municipality: a new building linked to the city hall, a new zone in an
    # existing building, a new server, a new teleworker group with a person.
    grown = Model(
        municipality=model.municipality,
        buildings=dict(model.buildings),
        links=dict(model.links),
        teleworker_groups=dict(model.teleworker_groups),
        teleworkers=list(model.teleworkers),
    )
    grown.buildings["new"] = building("new", [(kind, hosts)], 1, city_hall=False)
    grown.links["l-new"] = Link("l-new", ("b0", "new"), "fibre", 1000, 100, False, 1500)
    b0 = grown.buildings["b0"]
    extra_kind = next((k for k in ZONE_KINDS if k not in b0.zones), None)
    if extra_kind:
        zones = {**b0.zones, extra_kind: Zone("b0", extra_kind, extra_kind, hosts, None)}
        grown.buildings["b0"] = Building("b0", "", True, zones, b0.hosts)
    grown.teleworker_groups["g-new"] = TeleworkerGroup("g-new", "", 8)
    grown.teleworkers.append(Teleworker("tw-new", "New", "g-new", None, "enabled"))
    second = plan(grown, first)
    assume(second is not None)
    assert second is not None
    for section in SECTIONS:
        for key, entry in first[section].items():
            if section == "hosts" and entry["role"] == "gateway":
                # A gateway gains an interface for the new zone; the old ones stay.
                for zone, addresses in entry["interfaces"].items():
                    assert second[section][key]["interfaces"][zone] == addresses
                continue
            assert second[section][key] == entry, f"{section}.{key} changed"


@settings(max_examples=50, deadline=None)  # correctness, not speed: the machine is shared
@given(municipalities())
def test_planning_is_deterministic(model: Model):
    assert plan(model) == plan(model)
