#!/usr/bin/python3
"""kastro-telework: per-teleworker WireGuard metrics for Prometheus.

Installed by the telework role as /usr/local/sbin/kastro-telework. `collect` reads the peers'
handshakes and byte counters (`wg show all latest-handshakes` / `transfer`: public fields
only) into a file and labels each peer by the teleworker's stable id (from
/etc/wireguard/peers.json, public keys only), never by key; `exporter` serves that file
without any privilege.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PEERS = Path("/etc/wireguard/peers.json")


def _wg_show(what: str) -> list[list[str]]:
    out = subprocess.run(
        ["wg", "show", "all", what], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def peer_rows() -> Iterator[dict[str, Any]]:
    """One dict per peer: interface, public key, last handshake, bytes in and out. Only
    `latest-handshakes` and `transfer` are asked for: unlike `dump`, they never print a
    private or preshared key, so the collector never holds one."""
    transfer = {(f[0], f[1]): (int(f[2]), int(f[3])) for f in _wg_show("transfer") if len(f) == 4}
    for fields in _wg_show("latest-handshakes"):
        if len(fields) != 3:
            continue
        rx, tx = transfer.get((fields[0], fields[1]), (0, 0))
        yield {
            "interface": fields[0],
            "public_key": fields[1],
            "latest_handshake": int(fields[2]),
            "rx": rx,
            "tx": tx,
        }


class WireGuardCollector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["teleworker", "interface"]
        up = GaugeMetricFamily("kastro_telework_up", "1 if wg show could be read")
        handshake = GaugeMetricFamily(
            "kastro_telework_peer_last_handshake_timestamp_seconds",
            "When the peer last completed a handshake (0: never)",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "kastro_telework_peer_handshake_age_seconds",
            "Seconds since the peer's last handshake (absent: never)",
            labels=labels,
        )
        received = CounterMetricFamily(
            "kastro_telework_peer_received_bytes", "Bytes received from the peer", labels=labels
        )
        sent = CounterMetricFamily(
            "kastro_telework_peer_sent_bytes", "Bytes sent to the peer", labels=labels
        )
        try:
            names = json.loads(PEERS.read_text(encoding="utf-8")) if PEERS.exists() else {}
            now = time.time()
            for row in peer_rows():
                values = [names.get(row["public_key"], "unknown"), row["interface"]]
                handshake.add_metric(values, row["latest_handshake"])
                if row["latest_handshake"]:
                    age.add_metric(values, max(now - row["latest_handshake"], 0.0))
                received.add_metric(values, row["rx"])
                sent.add_metric(values, row["tx"])
            up.add_metric([], 1)
        except (OSError, subprocess.CalledProcessError, ValueError):
            up.add_metric([], 0)
        yield from (up, handshake, age, received, sent)


METRICS_PREFIX = "kastro_telework"
METRICS_FILE = "/run/kastro-telework-metrics/telework.prom"


# --- metrics: a privileged collector without a socket, an unprivileged server without rights --
# The collector (root's view of the system, no network listener) writes the metrics to a
# text file; the exporter (a dynamic user with no capabilities, bound to the management
# address) serves that file. A compromised HTTP listener can read counters, nothing more.


def publish(collector: Any, output: Path, interval: float, once: bool = False) -> None:
    """Write the collector's metrics to `output` every `interval` seconds, atomically."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    stamp = Gauge(
        f"{METRICS_PREFIX}_collect_timestamp_seconds",
        "When these metrics were last collected",
        registry=registry,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    while True:
        stamp.set_to_current_time()
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_bytes(generate_latest(registry))
        tmp.chmod(0o644)
        tmp.replace(output)
        if once:
            return
        time.sleep(interval)


def serve(textfile: Path, listen: str) -> None:
    """Serve the collector's file for Prometheus, parsed at every scrape (never stale
    silently: the file carries its collect timestamp)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.parser import text_string_to_metric_families

    class Textfile:
        def collect(self) -> Iterator[Any]:
            try:
                text = textfile.read_text(encoding="utf-8")
            except OSError:
                return
            yield from text_string_to_metric_families(text)

    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry()
    registry.register(Textfile())
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-telework", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="write the metrics to a file (privileged, no socket)")
    p.add_argument("--output", default=METRICS_FILE)
    p.add_argument("--interval", type=float, default=15.0, metavar="SECONDS")
    p.add_argument("--once", action="store_true")
    p = sub.add_parser("exporter", help="serve the collected metrics")
    p.add_argument("--listen", default="127.0.0.1:9553", metavar="ADDRESS:PORT")
    p.add_argument("--textfile", default=METRICS_FILE)
    sub.add_parser("peers", help="print the metrics' view of the peers as JSON")
    args = parser.parse_args(argv)
    if args.command == "peers":
        names = json.loads(PEERS.read_text(encoding="utf-8")) if PEERS.exists() else {}
        rows = [{**r, "teleworker": names.get(r["public_key"], "unknown")} for r in peer_rows()]
        print(json.dumps(rows, sort_keys=True))
    elif args.command == "collect":
        publish(WireGuardCollector(), Path(args.output), args.interval, once=args.once)
    else:
        serve(Path(args.textfile), args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
