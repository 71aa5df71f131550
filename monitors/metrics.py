"""Prometheus metrics of a monitor, read from its live state at scrape time.

Following client_python's custom-collector pattern: ``collect()`` reads the engine's
counters and tables when Prometheus scrapes, so there is no background thread and nothing
goes stale. Labels are bounded (protocol, detector, severity, reason): never an address or
a port, whose values are unbounded; per-address detail is in the alerts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitors.engine import Engine

PREFIX = "kastro_monitor"
# Seconds to process one batch of up to 512 packets.
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class MonitorCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        e = self.engine
        packets = CounterMetricFamily(
            f"{PREFIX}_packets", "Packets seen, by protocol.", labels=["protocol"]
        )
        bytes_ = CounterMetricFamily(
            f"{PREFIX}_bytes", "Bytes seen on the wire, by protocol.", labels=["protocol"]
        )
        for proto, count in sorted(e.stats.packets.items()):
            packets.add_metric([proto], count)
            bytes_.add_metric([proto], e.stats.bytes[proto])
        yield packets
        yield bytes_
        malformed = CounterMetricFamily(
            f"{PREFIX}_malformed_packets",
            "Packets skipped because they could not be parsed.",
            labels=["reason"],
        )
        for reason, count in sorted(e.stats.malformed.items()):
            malformed.add_metric([reason], count)
        yield malformed
        alerts = CounterMetricFamily(
            f"{PREFIX}_alerts", "Alerts written.", labels=["detector", "severity"]
        )
        for (detector_name, severity), count in sorted(e.stats.alerts.items()):
            alerts.add_metric([detector_name, severity], count)
        yield alerts
        yield CounterMetricFamily(
            f"{PREFIX}_alerts_suppressed",
            "Repeated alerts not written (deduplication).",
            value=e.sink.suppressed,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_alerts_rate_limited",
            "Alerts dropped by the alert rate limit.",
            value=e.sink.rate_limited,
        )
        tracked = GaugeMetricFamily(
            f"{PREFIX}_tracked_entries",
            "Entries in each detector's state table.",
            labels=["detector"],
        )
        evictions = CounterMetricFamily(
            f"{PREFIX}_evictions",
            "State entries evicted because a table was full.",
            labels=["detector"],
        )
        for detector in e.detectors:
            tracked.add_metric([detector.name], detector.tracked)
            evictions.add_metric([detector.name], detector.evictions)
        # The engine's own table of UDP flows, shared by the detectors (answers vs probes).
        tracked.add_metric(["conversations"], len(e.conversations.seen))
        evictions.add_metric(["conversations"], e.conversations.evictions)
        yield tracked
        yield evictions
        yield CounterMetricFamily(
            f"{PREFIX}_capture_packets",
            "Packets the kernel delivered to the capture.",
            value=e.stats.kernel_packets,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_capture_drops",
            "Packets the kernel dropped (ring full).",
            value=e.stats.kernel_drops,
        )
        hist = HistogramMetricFamily(
            f"{PREFIX}_batch_duration_seconds", "Time to process one batch of packets."
        )
        cumulative = 0
        buckets = []
        for bound, count in zip(BATCH_BUCKETS, e.stats.batch_buckets, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", e.stats.batches))
        hist.add_metric([], buckets, sum_value=e.stats.batch_seconds)
        yield hist
