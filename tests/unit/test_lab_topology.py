"""The lab's topology is derived from the model alone (no podman needed)."""

import pytest

from kastro.inventory.project import load_model
from kastro.lab.topology import IFNAMSIZ, build_topology, iface_name
from tests.inventory_helpers import EXAMPLE


def test_long_names_are_shortened_to_a_valid_unique_interface_name():
    short = iface_name("z-", "staff")
    long_a = iface_name("z-", "smart-city-sensors-north")
    long_b = iface_name("z-", "smart-city-sensors-south")
    assert short == "z-staff"
    assert len(long_a) <= IFNAMSIZ and len(long_b) <= IFNAMSIZ
    assert long_a != long_b


def test_example_topology_has_every_zone_link_and_the_internet():
    model, _ = load_model(EXAMPLE)
    topo = build_topology(model)
    names = {n.name for n in topo.networks}
    cables = {f"link:{k}" for k, link in model.links.items() if link.medium != "internet"}
    # The village office on 4G sits behind the lab's ISP NAT; its tunnel needs no cable. The
    # city hall's second ISP has a segment of its own; both ISPs' routers reach the backbone.
    internet = {"internet", "isp:platanos", "uplink:isp-vdsl", "backbone"}
    assert {f"zone:{z.key}" for z in model.zones} | cables | internet == names
    assert {"home", "attacker", "isp-nat", "isp-isp-fibre", "isp-isp-vdsl", "inet"} <= set(
        topo.hosts
    )
    assert topo.interface_vars("platanos-gw")["wan"] == "wan"
    assert topo.interface_vars("cityhall-gw")["wan"] == "wan"  # wan2: named by the model
    assert topo.interfaces("cityhall-gw")["uplink:isp-vdsl"] == "wan2"
    assert set(model.gateway(b).name for b in model.buildings) <= set(topo.hosts)  # type: ignore[union-attr]


def test_gateways_join_their_zones_and_links_servers_only_their_zone():
    model, _ = load_model(EXAMPLE)
    topo = build_topology(model)
    assert topo.interface_vars("deya-gw") == {
        "management": "eth0",
        "zones": {
            "cctv": "z-cctv",
            "management": "z-management",
            "scada": "z-scada",
            "staff": "z-staff",
            "voip": "z-voip",
        },
        "links": {
            "deya-cityhall": "l-cityhall",
            "deya-village": "l-village",
            "library-deya": "l-library",
        },
    }
    assert topo.interface_vars("fileserver") == {
        "management": "eth0",
        "zones": {"servers": "z-servers"},
    }
    assert topo.interface_vars("cityhall-gw")["wan"] == "wan"  # the uplink building
    assert topo.interface_vars("attacker") == {"management": "eth0", "wan": "wan"}


def test_lab_down_removes_again_a_container_podman_could_not_stop_at_once(tmp_path, monkeypatch):
    """`podman rm --force` can give up on a loaded machine ("given PIDs did not die within
    timeout"): the lab asks again until the container is gone, and says so when it never is."""
    from kastro.lab import hosts

    calls = tmp_path / "calls"
    podman = tmp_path / "podman"  # podman's answers as seen in CI, first a failure
    podman.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1" in\n'
        f"  rm) [ -e {tmp_path}/failed ] && exit 0; touch {tmp_path}/failed;\n"
        '      echo "given PIDs did not die within timeout" >&2; exit 125;;\n'
        f"  ps) [ -e {tmp_path}/failed ] && echo lab-web;;\n"
        "esac\n"
    )
    podman.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(hosts.time, "sleep", lambda _seconds: None)
    hosts._remove_containers(["lab-web", "lab-gone"])
    rm = [line for line in calls.read_text().splitlines() if line.startswith("rm")]
    assert rm == [
        "rm --force --ignore --time 5 lab-web lab-gone",
        "rm --force --ignore --time 5 lab-web",
    ]
    podman.write_text(
        '#!/bin/sh\n[ "$1" = ps ] && echo lab-web && exit 0\necho stuck >&2\nexit 125\n'
    )
    with pytest.raises(hosts.LabError, match="podman rm --force failed: stuck"):
        hosts._remove_containers(["lab-web"])
