"""kastro-collector-usage on a real directory tree like the collector's: each host's bytes on
disk (rotated and compressed files included), a directory named to break the metrics file
counted as "-", and the text file node_exporter reads (parsed by prometheus_client)."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kastro.host import collector_usage
from kastro.inventory.model import NAME_RE


def samples(text: str) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, sample.labels.get("sender", ""))] = sample.value
    return found


def test_each_hosts_share_is_measured_and_a_strange_name_is_not_a_label(tmp_path: Path) -> None:
    events = tmp_path / "events"
    (events / "files").mkdir(parents=True)
    (events / "files" / "auth.log").write_bytes(b"x" * 10_000)
    (events / "files" / "auth.log-20261205.gz").write_bytes(b"y" * 5_000)
    (events / "probe").mkdir()
    (events / "probe" / "eve.json").write_bytes(b"z" * 100_000)
    (events / 'evil"} 1\nkastro_collector_sender_bytes{host="web').mkdir()
    (events / 'evil"} 1\nkastro_collector_sender_bytes{host="web' / "eve.json").write_bytes(b"a")
    (events / "web").symlink_to("/etc")  # never followed
    usage = collector_usage.host_usage(events)
    assert sorted(usage) == ["-", "files", "probe"]
    assert usage["files"].files == 2 and usage["probe"].files == 1
    assert usage["probe"].bytes >= 100_000 > usage["files"].bytes >= 15_000
    found = samples(collector_usage.metrics_text(usage, 1000.0))
    assert found[("kastro_collector_sender_bytes", "probe")] == usage["probe"].bytes
    assert found[("kastro_collector_sender_files", "-")] == 1
    assert found[("kastro_collector_usage_success", "")] == 1
    assert ("kastro_collector_sender_bytes", "web") not in found


def test_an_unreadable_directory_is_a_failure_in_the_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / "usage.prom"
    code = collector_usage.main(["--events", str(tmp_path / "missing"), "--metrics", str(metrics)])
    assert code == 1
    found = samples(metrics.read_text())
    assert found[("kastro_collector_usage_success", "")] == 0
    assert os.stat(metrics).st_mode & 0o777 == 0o644


def test_host_names_follow_the_models_rule() -> None:
    assert collector_usage.HOST.pattern == NAME_RE.pattern
