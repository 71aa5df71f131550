"""`kastro monitor`: run the detectors on pcap files or a live interface."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from monitors.alerts import AlertSink
from monitors.capture import CaptureError, LiveCapture, read_file
from monitors.config import load_config
from monitors.detectors.base import ConfigError
from monitors.engine import Engine
from monitors.metrics import MonitorCollector


def add_arguments(parser: argparse.ArgumentParser, _: Callable[[str], str] = str) -> None:
    """The monitor's options; `_` says their help in the reader's language (kastro's CLI
    passes its translator; on a sensor, without kastro, they stay English)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--iface", metavar="IF", help=_("capture live from this interface (needs CAP_NET_RAW)")
    )
    source.add_argument(
        "--pcap", metavar="FILE", nargs="+", type=Path, help=_("read pcap/pcapng files")
    )
    parser.add_argument(
        "--config", type=Path, help=_("YAML file: home_networks, alerts, detectors")
    )
    parser.add_argument(
        "--eve-log", default="-", metavar="PATH", help=_("EVE JSON alerts here ('-': stdout)")
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help=_("serve Prometheus metrics on this port (0: off)"),
    )
    parser.add_argument(
        "--metrics-address", default="127.0.0.1", help=_("address for --metrics-port")
    )
    parser.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help=_("write the metrics here when done (node_exporter textfile format)"),
    )
    parser.add_argument(
        "--filter", default="", metavar="BPF", help=_("capture filter (tcpdump syntax), live only")
    )
    parser.add_argument(
        "--fanout-group",
        type=int,
        metavar="ID",
        help=_("share the interface with other monitors in this PACKET_FANOUT group"),
    )
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help=_("stop a live capture after this long")
    )
    parser.add_argument(
        "--check-config", action="store_true", help=_("only check --config and exit")
    )


class MonitorUsageError(Exception):
    """Bad arguments or configuration; the message names the option and the fix."""


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise MonitorUsageError(str(exc)) from exc
    if args.check_config:
        detectors = len(config.build_detectors())
        print(f"{args.config or 'default configuration'}: valid ({detectors} detectors on)")
        return 0
    if not args.iface and not args.pcap:
        raise MonitorUsageError("give --iface IF to capture live or --pcap FILE... to read files")
    if args.metrics_port and not 0 < args.metrics_port < 65536:
        raise MonitorUsageError(
            f"--metrics-port {args.metrics_port}: use a port between 1 and 65535"
        )
    try:
        ipaddress.ip_address(args.metrics_address)
    except ValueError as exc:
        raise MonitorUsageError(
            f"--metrics-address {args.metrics_address!r}: not an IP address; give the sensor's "
            "management address, e.g. 10.20.3.10 (or 127.0.0.1)"
        ) from exc
    if args.metrics_file:
        _check_writable(args.metrics_file, "--metrics-file")
    eve: IO[str] | None
    if args.eve_log == "-":
        eve = sys.stdout
    else:
        try:
            eve = Path(args.eve_log).open("a", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise MonitorUsageError(f"--eve-log {args.eve_log}: {exc.strerror}") from exc
    sink = AlertSink(
        eve, config.suppress_seconds, config.max_alerts_per_second, iface=args.iface or ""
    )
    engine = Engine(config.build_detectors(), sink)
    registry = CollectorRegistry()
    registry.register(MonitorCollector(engine))
    try:
        if args.metrics_port:
            _serve_metrics(args.metrics_port, args.metrics_address, registry)
        if args.pcap:
            return _run_files(engine, args.pcap)
        return _run_live(engine, args)
    except CaptureError as exc:
        raise MonitorUsageError(str(exc)) from exc
    finally:
        if args.metrics_file:
            _write_metrics(args.metrics_file, registry)
        if eve is not sys.stdout and eve is not None:
            eve.close()


def _serve_metrics(port: int, address: str, registry: CollectorRegistry) -> None:
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise MonitorUsageError(
            f"--metrics-port {port} on {address}: {exc.strerror or exc}; choose a free port "
            "or stop the program using it (ss -ltnp)"
        ) from exc


def _check_writable(path: Path, option: str) -> None:
    """Refuse an output file that cannot be written before any work is done."""
    target = path if path.exists() else path.parent
    if path.is_dir() or not os.access(target, os.W_OK):
        raise MonitorUsageError(
            f"{option} {path}: cannot write there; give a file in a writable directory"
        )


def _write_metrics(path: Path, registry: CollectorRegistry) -> None:
    """Atomically (node_exporter's textfile collector must never read half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(generate_latest(registry))
        tmp.replace(path)
    except OSError as exc:
        print(f"kastro monitor: --metrics-file {path}: {exc.strerror}", file=sys.stderr)


def _run_files(engine: Engine, paths: list[Path]) -> int:
    started = time.perf_counter()
    for path in paths:
        for batch in read_file(path):
            engine.process_batch(batch)
    elapsed = time.perf_counter() - started
    _summary(engine, elapsed)
    return 0


def _run_live(engine: Engine, args: argparse.Namespace) -> int:
    capture = LiveCapture(args.iface, bpf=args.filter, fanout_group=args.fanout_group)
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    deadline = time.monotonic() + args.duration if args.duration else None
    started = time.perf_counter()
    next_stats = 0.0
    try:
        for batch in capture.batches(timeout=0.2):
            if batch:
                engine.process_batch(batch)
            now = time.monotonic()
            if now >= next_stats:
                engine.stats.kernel_packets, engine.stats.kernel_drops = capture.statistics()
                next_stats = now + 1.0
            if stop or (deadline is not None and now >= deadline):
                break
    finally:
        engine.stats.kernel_packets, engine.stats.kernel_drops = capture.statistics()
        capture.close()
    _summary(engine, time.perf_counter() - started)
    return 0


def _summary(engine: Engine, elapsed: float) -> None:
    stats = engine.stats
    total = stats.total_packets
    by_detector: Counter[str] = Counter()
    for (detector, _severity), count in stats.alerts.items():
        by_detector[detector] += count
    lines = [
        f"packets: {total} in {elapsed:.2f}s ({total / max(elapsed, 1e-9):,.0f} packets/s)",
        f"malformed or skipped: {sum(stats.malformed.values())}",
        "alerts: " + (", ".join(f"{d} {n}" for d, n in sorted(by_detector.items())) or "none"),
        f"suppressed repeats: {engine.sink.suppressed}, rate-limited: {engine.sink.rate_limited}",
    ]
    if stats.kernel_packets:
        lines.append(f"kernel: {stats.kernel_packets} delivered, {stats.kernel_drops} dropped")
    print("\n".join(lines), file=sys.stderr)
