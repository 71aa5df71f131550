"""`kastro respond`'s metrics, from what it keeps on the controller: the decisions in force
and the audit log (append-only, so its counts only grow, as Prometheus counters must).

Written to `respond.prom` in the state directory after every action, for node_exporter's
textfile collector on the SOC's controller (or `kastro respond reconcile --every` serves it
with --metrics-listen):

  kastro_respond_decisions{kind}                    blocks and isolations in force
  kastro_respond_actions_total{action, result}      result: complete, partial
  kastro_respond_apply_seconds{action}              histogram: command to verified on every host
  kastro_respond_hosts_missing                      hosts the last action or reconcile missed
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kastro.respond.decisions import KINDS, DecisionStore

# The SOC's goal is seconds: 0.5 s to a minute, finer where the goal lies (benchmarks/).
BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
METRICS_FILE = "respond.prom"


class RespondCollector:
    """Reads the store at collect time: nothing is cached, nothing goes stale."""

    def __init__(self, store: DecisionStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        decisions = GaugeMetricFamily(
            "kastro_respond_decisions", "Blocks and isolations in force", labels=["kind"]
        )
        kinds = Counter(d.kind for d in self.store.load(time.time()).values())
        for kind in KINDS:
            decisions.add_metric([kind], kinds[kind])
        records = self.store.audit_records()
        actions = CounterMetricFamily(
            "kastro_respond_actions",
            "Actions taken (complete: every host has it; partial: reconcile finishes it)",
            labels=["action", "result"],
        )
        for (action, result), count in sorted(_results(records).items()):
            actions.add_metric([action, result], count)
        seconds = HistogramMetricFamily(
            "kastro_respond_apply_seconds",
            "From command to the change verified on every host",
            labels=["action"],
        )
        for action, values in sorted(_durations(records).items()):
            buckets = [(str(b), sum(v <= b for v in values)) for b in BUCKETS]
            seconds.add_metric([action], [*buckets, ("+Inf", len(values))], sum(values))
        missing = GaugeMetricFamily(
            "kastro_respond_hosts_missing", "Hosts the last action or reconcile could not change"
        )
        last = records[-1] if records else {}
        missing.add_metric(
            [], sum(status not in ("ok", "covered") for status in last.get("gateways", {}).values())
        )
        yield from (decisions, actions, seconds, missing)


def _results(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter(
        (str(r.get("action")), "complete" if r.get("complete") else "partial")
        for r in records
        if r.get("action")
    )


def _durations(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for record in records:
        if isinstance(record.get("seconds"), int | float) and record.get("action") != "reconcile":
            out.setdefault(str(record["action"]), []).append(float(record["seconds"]))
    return out


def parse_listen(text: str) -> tuple[str, int]:
    """'10.20.3.5:9559' or '[fd00::5]:9559' -> (address, port), or ValueError."""
    host, _, port = text.rpartition(":")
    address = str(ipaddress.ip_address(host.removeprefix("[").removesuffix("]")))
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(port)
    return address, number


def registry(store: DecisionStore) -> Any:
    from prometheus_client import CollectorRegistry

    out = CollectorRegistry()
    out.register(RespondCollector(store))
    return out


def write(store: DecisionStore) -> Path:
    """respond.prom beside the decisions (read by node_exporter's textfile collector)."""
    from prometheus_client import write_to_textfile  # a temporary file, then a rename

    path = store.directory / METRICS_FILE
    write_to_textfile(str(path), registry(store))
    return path
