"""Unusual outbound volume per internal host (possible exfiltration).

Reasoning: each host has its own habits (a file server sends a lot, a CCTV camera a steady
stream, an office PC little), so one global threshold either misses theft from quiet hosts
or floods alerts from busy ones. We keep, per internal host, an exponentially weighted
moving average of the bytes it sends outside the municipality per interval and of the
absolute deviation from it (a robust stand-in for the standard deviation), and report an
interval far above the host's own baseline and above an absolute floor, after a warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.batch import Bools, Columns
from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import Packet


@dataclass
class VolumeConfig(DetectorConfig):
    interval_seconds: float = 10.0
    alpha: float = 0.1  # EWMA weight of the newest interval
    deviations: float = 6.0  # how many mean absolute deviations above the mean is unusual
    min_bytes: int = 20_000_000  # never alert below this per interval
    warmup_intervals: int = 6


class _Host:
    __slots__ = ("bucket", "bucket_start", "dev", "intervals", "mean")

    def __init__(self, start: float) -> None:
        self.bucket_start = start
        self.bucket = 0
        self.mean = 0.0
        self.dev = 0.0
        self.intervals = 0


class VolumeDetector(Detector):
    name = "volume"
    config_class = VolumeConfig
    wants = frozenset({"ip"})
    config: VolumeConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        if pkt.dst in self.home or pkt.src not in self.home:
            return  # only traffic leaving the municipality (most traffic stays inside)
        state = self.table.get_or_create(pkt.src, lambda: _Host(pkt.ts))
        cfg = self.config
        while pkt.ts - state.bucket_start >= cfg.interval_seconds:
            self._close_interval(state, pkt, emit)
        state.bucket += pkt.length
        if state.intervals >= cfg.warmup_intervals and state.bucket > self._limit(state):
            self._alert(state, pkt, emit)

    def batch_mask(self, kind: str, cols: Columns) -> Bools:
        return self.home.v4_mask(cols.src) & ~self.home.v4_mask(cols.dst)

    def _limit(self, state: _Host) -> float:
        return max(self.config.min_bytes, state.mean + self.config.deviations * max(state.dev, 1.0))

    def _close_interval(self, state: _Host, pkt: Packet, emit: Emit) -> None:
        cfg = self.config
        value = state.bucket
        if state.intervals == 0:
            state.mean = float(value)
        else:
            state.dev = (1 - cfg.alpha) * state.dev + cfg.alpha * abs(value - state.mean)
            state.mean = (1 - cfg.alpha) * state.mean + cfg.alpha * value
        state.intervals += 1
        state.bucket = 0
        state.bucket_start += cfg.interval_seconds
        if pkt.ts - state.bucket_start > 100 * cfg.interval_seconds:  # long idle: skip ahead
            state.bucket_start = pkt.ts

    def _alert(self, state: _Host, pkt: Packet, emit: Emit) -> None:
        emit(
            self.flow_alert(
                pkt,
                9100051,
                "KASTRO unusual outbound volume (possible exfiltration)",
                "Potential Corporate Privacy Violation",
                2,
                {
                    "bytes_in_interval": state.bucket,
                    "interval_seconds": self.config.interval_seconds,
                    "baseline_bytes": round(state.mean),
                    "baseline_deviation_bytes": round(state.dev),
                    "threshold_bytes": round(self._limit(state)),
                },
                dedup=(pkt.src, b""),
            )
        )

    def expire(self, now: float) -> None:
        horizon = 360 * self.config.interval_seconds
        self.table.expire(lambda s: now - s.bucket_start > horizon)
