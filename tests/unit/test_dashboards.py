"""Kastro's Grafana dashboards: generated from code, committed as JSON, every query valid PromQL
(promtool parses it), every dashboard readable by Grafana's own typed model. That each query
returns data is tested against the lab's Prometheus (tests/lab/test_alerting.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from kastro.monitoring.dashboards import BOARDS, dashboards, queries

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "dashboards"


def test_the_committed_json_is_what_the_code_generates():
    """After a change to kastro/monitoring/dashboards.py: kastro dashboards dashboards/"""
    generated = dashboards()
    assert sorted(p.name for p in COMMITTED.glob("*.json")) == sorted(generated)
    for name, data in generated.items():
        assert json.loads((COMMITTED / name).read_text(encoding="utf-8")) == data, name


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool")
def test_every_query_is_valid_promql(tmp_path):
    rules = [
        {"record": f"kastro:dashboard_query_{i}", "expr": expr}
        for i, (_, _, expr) in enumerate(queries("cityhall"))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_grafanas_typed_model_reads_each_dashboard_back(name):
    data = dashboards()[name]
    model = Dashboard.from_json(data)
    assert model.uid == data["uid"] and model.title == data["title"]
    assert len(model.panels or []) == len(data["panels"])


def test_every_panel_has_a_greek_and_english_title_and_the_datasource_variable():
    for board in dashboards().values():
        assert " / " in board["title"]
        for panel in board["panels"]:
            assert " / " in panel["title"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert [t["refId"] for t in panel["targets"]] == ["A"]


def test_the_building_dashboard_lists_the_buildings_from_prometheus():
    building = next(b for b in dashboards().values() if b["uid"] == "kastro-building")
    variable = next(v for v in building["templating"]["list"] if v["name"] == "building")
    assert "label_values(up, building)" in json.dumps(variable)
    assert all(b.uid.startswith("kastro-") for b in BOARDS)
