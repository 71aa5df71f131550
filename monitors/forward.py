"""Forward the sensor's EVE alerts to Alertmanager, so the SOC sees each alert, not a counter.

    python3 -m monitors.forward --eve /var/log/kastro/eve.json \\
        --alertmanager https://10.20.3.99:9093 --ca-file /etc/kastro/monitoring-ca.crt \\
        --password-file /run/credentials/kastro-forward.service/password \\
        --position /var/lib/kastro/forward.json --label host=sensor1 --label building=cityhall

Each EVE ``alert`` line becomes one Alertmanager alert with bounded labels (signature id and
name, category, detector, source and target address, and the sensor's own labels) and the EVE
record in an annotation. Alertmanager keeps an alert while it is refreshed; the forwarder
sends it with an end time ``--resolve-after`` seconds ahead and refreshes it only when the
same alert appears again after a third of that, so a repeated attack stays one alert and a
quiet one resolves by itself.

Nothing is lost: the read position is saved only after Alertmanager accepted what was read,
so an unreachable Alertmanager (a WAN cut) means the same lines are sent again later. A
rotated or truncated file is read from its start. ``--max-severity 2`` leaves out
informational alerts (severity 3: Suricata's protocol anomalies) and ``--ignore-sid`` a
signature that is no attack (Suricata's reload canary); both still count in the metrics of the
engine that wrote them. Over https the Alertmanager's certificate is
checked against --ca-file and the forwarder logs in as --user with the password in
--password-file (read once at start). Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAX_LINE = 65536
MAX_BATCH = 500
MAX_READ = 4 * 1024 * 1024
EVE_ANNOTATION = 4096
SEVERITY = {1: "critical", 2: "warning", 3: "info"}
_LABEL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9._:/@ -]{1,63}$")
_URL = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ForwardUsageError(ValueError):
    """A bad command-line argument; the message names it and the fix."""


def text(value: Any, limit: int = 120) -> str:
    """A label or annotation value from a packet-derived field: printable, bounded."""
    return _CONTROL.sub(" ", str(value))[:limit]


def address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return ""


@dataclass
class Position:
    """Where reading stopped: the file's inode and the offset after the last whole line."""

    inode: int = 0
    offset: int = 0

    @classmethod
    def load(cls, path: Path) -> Position:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["inode"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        temp = path.with_name(path.name + ".new")
        temp.write_text(json.dumps({"inode": self.inode, "offset": self.offset}), encoding="utf-8")
        temp.replace(path)


@dataclass
class Batch:
    records: list[dict[str, Any]] = field(default_factory=list)
    end: Position = field(default_factory=Position)
    skipped: int = 0


def read_new(eve: Path, position: Position) -> Batch:
    """The whole new lines after `position` (at most MAX_READ bytes); a partial last line
    stays for the next read. A new inode or a shorter file: from the start."""
    try:
        st = eve.stat()
    except FileNotFoundError:
        return Batch(end=position)
    start = (
        position.offset if (st.st_ino == position.inode and st.st_size >= position.offset) else 0
    )
    with eve.open("rb") as handle:
        handle.seek(start)
        chunk = handle.read(MAX_READ)
    whole = chunk[: chunk.rfind(b"\n") + 1]
    batch = Batch(end=Position(st.st_ino, start + len(whole)))
    for line in whole.splitlines():
        record = _parse(line)
        if record is None:
            batch.skipped += 1
        elif record.get("event_type") == "alert":
            batch.records.append(record)
    return batch


def _parse(line: bytes) -> dict[str, Any] | None:
    if not line.strip() or len(line) > MAX_LINE:
        return None if line.strip() else {}
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def alert_of(record: dict[str, Any], labels: dict[str, str], resolve_after: float,
             now: float) -> dict[str, Any]:  # fmt: skip
    """The Alertmanager alert for one EVE alert record."""
    info: dict[str, Any] = record["alert"] if isinstance(record.get("alert"), dict) else {}
    kastro: dict[str, Any] = record["kastro"] if isinstance(record.get("kastro"), dict) else {}
    level = info.get("severity")
    severity = SEVERITY.get(level, "warning") if isinstance(level, int) else "warning"
    src, dst = address(record.get("src_ip")), address(record.get("dest_ip"))
    signature = text(info.get("signature", ""))
    alert_labels = {
        **labels,
        "alertname": "KastroEveAlert",
        "severity": severity,
        "signature_id": text(info.get("signature_id", ""), 12),
        "signature": signature,
        "category": text(info.get("category", ""), 60),
        "detector": text(kastro.get("detector", ""), 40),
        "src_ip": src,
        "dest_ip": dst,
    }
    where = labels.get("host", "?")
    eve = json.dumps(record, ensure_ascii=False, sort_keys=True)[:EVE_ANNOTATION]
    return {
        "labels": {k: v for k, v in alert_labels.items() if v},
        "annotations": {
            "summary_el": f"Ο αισθητήρας {where} εντόπισε: {signature} "
            f"(από {src or '-'} προς {dst or '-'}).",
            "summary_en": f"Sensor {where} detected: {signature} "
            f"(from {src or '-'} to {dst or '-'}).",
            "eve": eve,
            "runbook": "docs/monitoring.md#kastroevealert",
        },
        "startsAt": _iso(now),
        "endsAt": _iso(now + resolve_after),
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Forwarder:
    url: str
    labels: dict[str, str]
    resolve_after: float = 300.0
    timeout: float = 10.0
    sent: dict[tuple[str, ...], float] = field(default_factory=dict)
    max_tracked: int = 10000
    context: ssl.SSLContext | None = None  # https: the CA that signed Alertmanager's certificate
    authorization: str = ""  # an Authorization header value, or none
    max_severity: int = 3  # EVE severity 1 (high) .. 3 (informational): forward 1..max_severity
    ignore_sids: frozenset[str] = frozenset()

    def wanted(self, record: dict[str, Any]) -> bool:
        """Is this EVE alert for the SOC: severe enough, and not a signature to ignore?"""
        info = record["alert"] if isinstance(record.get("alert"), dict) else {}
        level = info.get("severity")
        if isinstance(level, int) and not isinstance(level, bool) and level > self.max_severity:
            return False
        return str(info.get("signature_id", "")) not in self.ignore_sids

    def due(self, alerts: Iterable[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """The alerts to send: new ones, and repeats older than a third of resolve_after."""
        out: dict[tuple[str, ...], dict[str, Any]] = {}
        for alert in alerts:
            key = tuple(sorted(alert["labels"].items()))
            if now - self.sent.get(key, -1e18) >= self.resolve_after / 3:
                out[key] = alert
        return list(out.values())

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Send to Alertmanager's API v2; raises OSError when it does not accept them."""
        for start in range(0, len(alerts), MAX_BATCH):
            body = json.dumps(alerts[start : start + MAX_BATCH]).encode()
            # self.url was checked to be http(s)://host:port by arguments().
            headers = {"Content-Type": "application/json"}
            if self.authorization:
                headers["Authorization"] = self.authorization
            request = urllib.request.Request(  # noqa: S310
                f"{self.url}/api/v2/alerts", data=body, headers=headers, method="POST"
            )
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout, context=self.context
            ) as response:
                if response.status >= 300:
                    raise OSError(f"Alertmanager answered {response.status}")

    def remember(self, alerts: list[dict[str, Any]], now: float) -> None:
        for alert in alerts:
            self.sent[tuple(sorted(alert["labels"].items()))] = now
        if len(self.sent) > self.max_tracked:
            for key in sorted(self.sent, key=self.sent.__getitem__)[: len(self.sent) // 2]:
                del self.sent[key]


def forward_once(forwarder: Forwarder, eve: Path, position_file: Path,
                 now: float | None = None) -> dict[str, int]:  # fmt: skip
    """Read what is new, send what is due, save the position only when it was accepted."""
    now = time.time() if now is None else now
    position = Position.load(position_file)
    batch = read_new(eve, position)
    alerts = [
        alert_of(r, forwarder.labels, forwarder.resolve_after, now)
        for r in batch.records
        if forwarder.wanted(r)
    ]
    due = forwarder.due(alerts, now)
    if due:
        forwarder.post(due)  # an OSError leaves the position where it was
        forwarder.remember(due, now)
    if batch.end != position:
        batch.end.save(position_file)
    return {"read": len(batch.records), "sent": len(due), "skipped": batch.skipped}


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not _LABEL_NAME.match(name) or not _LABEL_VALUE.match(value):
            raise ForwardUsageError(
                f"--label {pair!r}: use name=value, the name in lower case letters, digits and "
                "'_', the value at most 63 letters, digits or ._:/@- (e.g. building=cityhall)"
            )
        labels[name] = value
    return labels


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m monitors.forward",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--eve", type=Path, required=True, help="the monitor's EVE file")
    parser.add_argument("--alertmanager", required=True, help="e.g. http://10.20.3.99:9093")
    parser.add_argument(
        "--position", type=Path, required=True, help="where the read position is kept"
    )
    parser.add_argument("--ca-file", type=Path, help="CA of Alertmanager's certificate (https)")
    parser.add_argument("--user", default="kastro", help="Alertmanager's web user (default kastro)")
    parser.add_argument("--password-file", type=Path, help="the web password, one line (https)")
    parser.add_argument("--label", action="append", default=[], help="name=value on every alert")
    parser.add_argument(
        "--max-severity", type=int, choices=(1, 2, 3), default=3,
        help="forward alerts of EVE severity 1 up to this (default 3: all)",
    )  # fmt: skip
    parser.add_argument(
        "--ignore-sid", action="append", default=[], help="a signature id never forwarded"
    )
    parser.add_argument("--resolve-after", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between reads")
    parser.add_argument("--once", action="store_true", help="one read, then exit")
    args = parser.parse_args(argv)
    try:
        if not _URL.match(args.alertmanager):
            raise ForwardUsageError(
                f"--alertmanager {args.alertmanager!r}: give scheme, host and port only, "
                "e.g. http://10.20.3.99:9093"
            )
        if not 30 <= args.resolve_after <= 86400 or not 0.1 <= args.interval <= 600:
            raise ForwardUsageError("--resolve-after must be 30..86400 s, --interval 0.1..600 s")
        args.labels = parse_labels(args.label)
        bad = [sid for sid in args.ignore_sid if not (sid.isdecimal() and len(sid) <= 12)]
        if bad:
            raise ForwardUsageError(
                f"--ignore-sid {bad[0]!r}: give a signature id, digits only (e.g. 9299999)"
            )
        args.context, args.authorization = _tls(args)
    except ForwardUsageError as exc:
        parser.error(str(exc))
    return args


def _tls(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, str]:
    """The TLS context and Authorization header for an https Alertmanager; none for http."""
    if not args.alertmanager.startswith("https://"):
        if args.ca_file or args.password_file:
            raise ForwardUsageError("--ca-file and --password-file need an https:// Alertmanager")
        return None, ""
    if not args.ca_file or not args.password_file:
        raise ForwardUsageError(
            "an https:// Alertmanager needs --ca-file (its CA) and --password-file (its password)"
        )
    try:
        context = ssl.create_default_context(cafile=str(args.ca_file))
        password = args.password_file.read_text(encoding="utf-8").strip()
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        raise ForwardUsageError(f"cannot read --ca-file or --password-file: {exc}") from None
    if not password or not _LABEL_NAME.match(args.user):
        raise ForwardUsageError("--password-file is empty, or --user is not a plain user name")
    token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
    return context, f"Basic {token}"


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    forwarder = Forwarder(
        args.alertmanager.rstrip("/"),
        args.labels,
        args.resolve_after,
        context=args.context,
        authorization=args.authorization,
        max_severity=args.max_severity,
        ignore_sids=frozenset(args.ignore_sid),
    )
    while True:
        try:
            counts = forward_once(forwarder, args.eve, args.position)
            if args.once:
                print(json.dumps(counts))
                return 0
        except (OSError, urllib.error.URLError) as exc:
            print(f"kastro-forward: Alertmanager not reached, will retry: {exc}", file=sys.stderr)
            if args.once:
                return 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
