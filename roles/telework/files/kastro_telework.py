#!/usr/bin/python3
"""kastro-telework: per-teleworker WireGuard metrics for Prometheus.

Installed by the telework role as /usr/local/sbin/kastro-telework. Reads `wg show all dump`
at scrape time and labels each peer by the teleworker's stable id (from
/etc/wireguard/peers.json, public keys only), never by key. The dump also holds private and
preshared keys: only the public fields are read from it.
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


def peer_rows() -> Iterator[dict[str, Any]]:
    """One dict per peer: interface, public key, last handshake, bytes in and out."""
    out = subprocess.run(
        ["wg", "show", "all", "dump"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 9:  # interface lines have 5 fields
            continue
        yield {
            "interface": fields[0],
            "public_key": fields[1],
            "latest_handshake": int(fields[5]),
            "rx": int(fields[6]),
            "tx": int(fields[7]),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-telework", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("exporter", help="serve the metrics")
    p.add_argument("--listen", default="0.0.0.0:9553")
    sub.add_parser("peers", help="print the metrics' view of the peers as JSON")
    args = parser.parse_args(argv)
    if args.command == "peers":
        names = json.loads(PEERS.read_text(encoding="utf-8")) if PEERS.exists() else {}
        rows = [{**r, "teleworker": names.get(r["public_key"], "unknown")} for r in peer_rows()]
        print(json.dumps(rows, sort_keys=True))
        return 0

    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

    class WireGuardCollector:
        def collect(self) -> Iterator[Any]:
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

    host, _, port = args.listen.rpartition(":")
    REGISTRY.register(WireGuardCollector())
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0")  # noqa: S104
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
