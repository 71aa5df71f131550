"""The topology picture (issue #25): internet and ISPs, servers, VPN pools and a legend on the
wall chart; a view per building and per district; 300 buildings drawn as districts instead of
a hairball. Laid out by the real Graphviz: no two boxes overlap, the links' labels (nodes of
their own in the layout) included."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kastro.cli import main
from kastro.inventory.graph import OVERVIEW_LIMIT, topology_dot
from kastro.inventory.project import validate_inventory
from tests.inventory_helpers import EXAMPLE, without_ports

needs_graphviz = pytest.mark.skipif(not shutil.which("neato"), reason="needs Graphviz")
DISTRICTS = {"cityhall": "Κάστρο", "kep": "Κάστρο", "library": "Κάστρο", "school": "Κάστρο",
             "deya": "Άγιος Νικόλαος", "village": "Άγιος Νικόλαος"}  # fmt: skip


def layout(dot: str) -> dict:
    proc = subprocess.run(["neato", "-Tjson"], input=dot, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def places(drawn: dict) -> set[str]:
    """The nodes that are places (not a link's label)."""
    return {n["name"] for n in drawn["objects"] if not n["name"].startswith("link:")}


def boxes(drawn: dict) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for node in drawn.get("objects", []):
        x, y = (float(v) for v in node["pos"].split(","))
        w, h = float(node["width"]) * 36, float(node["height"]) * 36  # half, in points
        out[node["name"]] = (x - w, y - h, x + w, y + h)
    return out


def assert_readable(drawn: dict) -> None:
    placed = boxes(drawn)
    names = sorted(placed)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = placed[a], placed[b]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a} overlaps {b}"


def with_districts(tmp_path: Path, names: dict[str, str]) -> Path:
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    path = inventory / "group_vars/all/buildings.yml"
    text = path.read_text(encoding="utf-8")
    for building, district in names.items():
        old = f"\n  {building}:\n"
        assert text.count(old) == 1
        text = text.replace(old, f"{old}    district: {district}\n")
    path.write_text(text, encoding="utf-8")
    return inventory


@needs_graphviz
def test_the_wall_chart_has_the_internet_servers_pools_and_a_legend():
    planned = validate_inventory(EXAMPLE)
    dot = topology_dot(planned.model, planned.result.data)
    assert 'label="isp-fibre: Hellenic fibre ISP (example), 1000 Mbit/s"' in dot
    assert "fileserver (server) 10.20.2.10" in dot and "finance: 10.20.4.192/26" in dot
    assert "Υπόμνημα / Legend" in dot and '"link:deya:cityhall:' in dot
    assert_readable(layout(dot))


@needs_graphviz
def test_one_building_with_its_neighbours_only():
    planned = validate_inventory(EXAMPLE)
    dot = topology_dot(planned.model, planned.result.data, building="deya")
    nodes = places(layout(dot))
    assert nodes == {"deya", "library", "cityhall", "village", "legend"}
    assert "scada: 10.20.2.64/26" in dot and "fileserver" not in dot  # neighbours in brief
    assert "link:library:school" not in dot
    assert_readable(layout(dot))


@needs_graphviz
def test_one_district_and_the_links_leaving_it(tmp_path: Path):
    planned = validate_inventory(with_districts(tmp_path, DISTRICTS))
    dot = topology_dot(planned.model, planned.result.data, district="Άγιος Νικόλαος")
    nodes = places(layout(dot))
    assert nodes == {"deya", "village", "library", "cityhall", "teleworkers", "internet",
                     "legend"} - {"teleworkers", "internet"}  # fmt: skip
    assert "(Κάστρο)" in dot  # the buildings outside say where they are
    assert_readable(layout(dot))


def big_inventory(target: Path, count: int, districts: int) -> Path:
    without_ports(shutil.copytree(EXAMPLE, target))
    gv = target / "group_vars" / "all"
    buildings, links = {}, {}
    for i in range(count):
        name = "cityhall" if i == 0 else f"b{i:03d}"
        buildings[name] = {
            "zones": {"staff": {"hosts": 20}, "management": {"hosts": 4}},
            "hosts": {f"{name}-gw": {"role": "gateway"}},
            **({"district": f"ενότητα-{i % districts}"} if districts else {}),
            **({"city_hall": True} if i == 0 else {}),
        }
        if i:
            other = "cityhall" if i < 10 else f"b{(i // 10):03d}" if i // 10 else "cityhall"
            links[f"{other}-{name}"] = {"ends": [other, name], "medium": "fibre",
                                        "capacity_mbps": 1000}  # fmt: skip
    buildings["cityhall"]["zones"]["servers"] = {"hosts": 10}
    (gv / "buildings.yml").write_text(yaml.safe_dump({"kastro_buildings": buildings}), "utf-8")
    (gv / "links.yml").write_text(yaml.safe_dump({"kastro_links": links}), "utf-8")
    for name in ("kastro_plan.yml", "teleworkers.yml", "nis2.yml", "backup.yml", "published.yml"):
        (gv / name).unlink(missing_ok=True)
    (gv / "policy.yml").write_text("kastro_services: {}\nkastro_policy: []\n", "utf-8")
    municipality = yaml.safe_load((gv / "municipality.yml").read_text(encoding="utf-8"))
    municipality["kastro_municipality"].pop("monitoring_hosts", None)
    municipality["kastro_municipality"].pop("event_collector", None)
    municipality["kastro_municipality"]["updates"] = {"direct": True}  # no servers of the example
    municipality["kastro_municipality"]["uplinks"] = municipality["kastro_municipality"]["uplinks"][
        :1
    ]  # the city hall's; the village office's is gone with its building
    (gv / "municipality.yml").write_text(yaml.safe_dump(municipality), encoding="utf-8")
    assert main(["apply", "-i", str(target)]) == 0
    return target


@needs_graphviz
def test_three_hundred_buildings_are_drawn_as_districts(tmp_path: Path):
    planned = validate_inventory(big_inventory(tmp_path / "big", 300, districts=10))
    assert len(planned.model.buildings) > OVERVIEW_LIMIT
    dot = topology_dot(planned.model, planned.result.data)
    started = time.monotonic()
    drawn = layout(dot)
    took = time.monotonic() - started
    names = places(drawn)
    assert names == {f"district:ενότητα-{i}" for i in range(10)} | {"internet", "legend"}
    assert "30 buildings" in dot and "links, " in dot
    assert_readable(drawn)
    one = topology_dot(planned.model, planned.result.data, district="ενότητα-3")
    assert_readable(layout(one))
    print(f"300 buildings: districts overview laid out in {took:.2f} s")


@needs_graphviz
def test_without_districts_a_big_overview_leaves_the_zones_out(tmp_path: Path):
    planned = validate_inventory(big_inventory(tmp_path / "big", 60, districts=0))
    dot = topology_dot(planned.model, planned.result.data)
    assert "staff: " not in dot and "--building NAME" in dot
    assert_readable(layout(dot))


def test_an_unknown_view_names_what_there_is(tmp_path: Path, capsys):
    out = str(tmp_path / "t.dot")
    assert main(["show", "graph", "-i", str(EXAMPLE), out, "--building", "museum"]) == 2
    assert "the buildings are: cityhall, deya" in capsys.readouterr().err
    assert main(["show", "graph", "-i", str(EXAMPLE), out, "--district", "x"]) == 2
    assert "no district 'x'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse: the two are exclusive
        main(["show", "graph", "-i", str(EXAMPLE), out, "--district", "x", "--building", "deya"])
    assert usage.value.code == 2 and not Path(out).exists()
