"""kastro-telework: per-teleworker WireGuard metrics for Prometheus.

Installed by the telework role as /usr/local/sbin/kastro-telework. `collect` reads the peers'
handshakes and byte counters (`wg show all latest-handshakes` / `transfer`: public fields
only) into a file and labels each peer by the teleworker's stable id (from
/etc/wireguard/peers.json, public keys only), never by key; `exporter` serves that file
without any privilege. With `--openvpn-unit`, it also counts the OpenVPN server's refusals of
revoked certificates in that unit's journal (a revoked device that keeps trying).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kastro.host import textfile
from kastro.host.commands import CommandError, run

PEERS = Path("/etc/wireguard/peers.json")


def _fields(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines() if line]


def _wg_show(what: str) -> str:
    return run("wg", "show", "all", what).stdout


def peer_rows() -> Iterator[dict[str, Any]]:
    """One dict per peer: interface, public key, last handshake, bytes in and out. Only
    `latest-handshakes` and `transfer` are asked for: unlike `dump`, they never print a
    private or preshared key, so the collector never holds one."""
    yield from parse_peers(_wg_show("latest-handshakes"), _wg_show("transfer"))


def parse_peers(handshakes: str, transfers: str) -> Iterator[dict[str, Any]]:
    """`wg show all latest-handshakes` and `wg show all transfer` -> one dict per peer."""
    transfer = {(f[0], f[1]): (int(f[2]), int(f[3])) for f in _fields(transfers) if len(f) == 4}
    for fields in _fields(handshakes):
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


# How OpenVPN 2.6 logs a client certificate that the CRL revokes.
REVOKED = "certificate revoked|CRL CHECK FAILED"
_UNIT = re.compile(r"^[A-Za-z0-9@_.-]{1,100}[.]service$")


class OpenVpnRefusals:
    """Counts the lines of `unit`'s journal that refuse a revoked certificate, since the
    collector started: one journalctl per collection, from where the last one stopped."""

    def __init__(self, unit: str) -> None:
        if not _UNIT.fullmatch(unit):
            raise ValueError(f"--openvpn-unit {unit!r} is not a systemd service name")
        self.unit = unit
        self.since = int(time.time())
        self.cursor = ""
        self.count = 0

    def poll(self) -> int:
        argv = ["journalctl", "--unit", self.unit, "--no-pager", "--output", "cat",
                "--show-cursor", "--grep", REVOKED]  # fmt: skip
        argv += [f"--after-cursor={self.cursor}"] if self.cursor else [f"--since=@{self.since}"]
        out = run(*argv, check=False)  # exit status 1: nothing matched
        if out.returncode not in (0, 1):
            raise CommandError(f"journalctl: {out.stderr.strip()}")
        self.count += count_refusals(out.stdout, self)
        return self.count


def count_refusals(text: str, state: OpenVpnRefusals) -> int:
    """The refusals in journalctl's output; remembers its closing cursor in `state`."""
    lines = text.splitlines()
    if lines and lines[-1].startswith("-- cursor: "):
        state.cursor = lines.pop()[len("-- cursor: ") :]
    return sum(1 for line in lines if line and not line.startswith("-- "))


class WireGuardCollector:
    def __init__(self, refusals: OpenVpnRefusals | None = None) -> None:
        self.refusals = refusals

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
        except (OSError, CommandError, ValueError):
            up.add_metric([], 0)
        yield from (up, handshake, age, received, sent)
        if self.refusals is not None:
            yield from self.openvpn_metrics(self.refusals)

    @staticmethod
    def openvpn_metrics(refusals: OpenVpnRefusals) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        readable = GaugeMetricFamily(
            "kastro_telework_openvpn_journal_up", "1 if the OpenVPN server's journal was read"
        )
        refused = CounterMetricFamily(
            "kastro_telework_openvpn_revoked_refusals",
            "Connections the OpenVPN server refused for a revoked certificate",
        )
        try:
            refused.add_metric([], refusals.poll())
            readable.add_metric([], 1)
        except (OSError, CommandError):
            refused.add_metric([], refusals.count)
            readable.add_metric([], 0)
        yield from (readable, refused)


METRICS_PREFIX = "kastro_telework"
METRICS_FILE = "/run/kastro-telework-metrics/telework.prom"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-telework", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    collect = textfile.add_collect_command(sub, METRICS_FILE, 15.0)
    collect.add_argument(
        "--openvpn-unit", help="count revoked-certificate refusals in this unit's journal"
    )
    textfile.add_exporter_command(sub, "127.0.0.1:9553", METRICS_FILE)
    sub.add_parser("peers", help="print the metrics' view of the peers as JSON")
    args = parser.parse_args(argv)
    if args.command == "peers":
        names = json.loads(PEERS.read_text(encoding="utf-8")) if PEERS.exists() else {}
        rows = [{**r, "teleworker": names.get(r["public_key"], "unknown")} for r in peer_rows()]
        print(json.dumps(rows, sort_keys=True))
    elif args.command == "collect":
        try:
            refusals = OpenVpnRefusals(args.openvpn_unit) if args.openvpn_unit else None
        except ValueError as exc:
            parser.error(str(exc))
        textfile.publish(
            WireGuardCollector(refusals), args.output, args.interval, METRICS_PREFIX, args.once
        )
    else:
        textfile.serve(args.textfile, args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
