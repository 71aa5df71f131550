"""Metrics for the host programs: a privileged collector without a socket writes a text file,
an unprivileged server without rights serves it.

The collector (root's view of the system, or a service account's; no network listener)
registers a module-level collector class on its own registry and calls `publish`; the
exporter (a dynamic user with no capabilities, bound to the management address) calls
`serve`. A compromised HTTP listener can read counters, nothing more.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_text(output: Path, text: str) -> None:
    """A text file node_exporter reads, replaced whole (a scrape never sees half of it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(output)


def write_once(registry: Any, output: Path) -> None:
    """The registry's metrics into `output`, atomically (a scrape never sees half a file)."""
    from prometheus_client import generate_latest

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_bytes(generate_latest(registry))
    tmp.chmod(0o644)
    tmp.replace(output)


def publish(collector: Any, output: Path, interval: float, prefix: str, once: bool = False) -> None:
    """Write the collector's metrics, and `PREFIX_collect_timestamp_seconds`, to `output`
    every `interval` seconds."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    registry.register(collector)
    stamp = Gauge(
        f"{prefix}_collect_timestamp_seconds",
        "When these metrics were last collected",
        registry=registry,
    )
    while True:
        stamp.set_to_current_time()
        write_once(registry, output)
        if once:
            return
        time.sleep(interval)


class Textfile:
    """A collector that reads a collector's file at every scrape: never stale silently,
    since the file carries its collect timestamp. A missing file yields nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return
        yield from text_string_to_metric_families(text)


def parse_listen(listen: str) -> tuple[str, int]:
    """'10.0.0.1:9552' or '[fd00::1]:9552' -> (address, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def start(textfile: Path, listen: str) -> Any:
    """Start serving `textfile` on `listen` in a thread. Returns what start_http_server
    returns: (server, thread) on prometheus-client 0.18 and later, None on bookworm's 0.16."""
    from prometheus_client import CollectorRegistry, start_http_server

    address, port = parse_listen(listen)
    registry = CollectorRegistry()
    registry.register(Textfile(textfile))
    return start_http_server(port, addr=address, registry=registry)


def serve(textfile: Path, listen: str) -> None:
    """Serve `textfile` for Prometheus until killed."""
    start(textfile, listen)
    while True:
        time.sleep(3600)


def add_collect_command(
    sub: Any, output: str, interval: float, what: str = "the metrics", once: bool = True
) -> argparse.ArgumentParser:
    """The `collect` subcommand every host program has: --output, --interval, and --once
    where one reading means something (not for the links' probes, which run continuously)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "collect", help=f"write {what} to a file (privileged, no socket)"
    )
    p.add_argument("--output", type=Path, default=Path(output))
    p.add_argument("--interval", type=float, default=interval, metavar="SECONDS")
    if once:
        p.add_argument("--once", action="store_true", help="write once and stop")
    return p


def add_exporter_command(sub: Any, listen: str, textfile: str) -> argparse.ArgumentParser:
    """The `exporter` subcommand every host program has: --listen, --textfile."""
    p: argparse.ArgumentParser = sub.add_parser(
        "exporter", help="serve the collected metrics for Prometheus"
    )
    p.add_argument("--listen", default=listen, metavar="ADDRESS:PORT")
    p.add_argument("--textfile", type=Path, default=Path(textfile))
    return p
