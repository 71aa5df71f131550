"""kastro-suricata: a new ruleset reaches the running Suricata only after it is proven.

`apply` takes the candidate the controller built (kastro.suricata.ruleset) and
  1. tests it with `suricata -T` against the sensor's real configuration: a candidate that
     fails is rejected with Suricata's own message, and the live ruleset is not touched;
  2. installs it (the previous one kept beside it) and asks the running engine to reload its
     rules over the unix socket (no restart, no capture gap);
  3. proves the engine runs it: one UDP packet to the sensor's own loopback carries the
     ruleset's canary token; only the new ruleset's canary rule matches it, and its alert
     must appear in eve.json. Otherwise the previous ruleset is put back and reloaded.

It prints one JSON object (what happened, rules loaded and failed, seconds) and writes the
ruleset's facts for node_exporter (suricata_ruleset.prom). Exit status 0: live and proven;
1: rejected or not proven (the previous ruleset runs); 2: bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kastro.host import commands, textfile

CANARY_SID = 9299999  # Kastro's SIDs are 9200000-9299999 (kastro/suricata/rules)
CANARY_PORT = 9  # discard, on the sensor's loopback only
TOKEN = re.compile(r"[0-9a-f]{16}")
MAX_EVE_TAIL = 4 * 1024 * 1024
MAX_LINE = 65536


class ApplyError(RuntimeError):
    """The candidate is not live; the message says why (Suricata's words where it spoke)."""


@dataclass
class Paths:
    candidate: Path
    live: Path
    config: Path
    socket: Path
    eve: Path
    metrics: Path


def test(paths: Paths) -> None:
    """`suricata -T` with the sensor's configuration and the candidate alone as its rules."""
    done = commands.run(
        "suricata", "-T", "-c", str(paths.config), "-S", str(paths.candidate),
        "-l", str(paths.candidate.parent), check=False,
    )  # fmt: skip
    if done.returncode != 0:
        said = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("E:")]
        raise ApplyError(
            "ο υποψήφιος κανόνας απορρίφθηκε / the candidate ruleset was rejected by suricata -T "
            "(the live ruleset keeps running): " + (" | ".join(said[:5]) or done.stderr[-500:])
        )


class Engine:
    """Suricata's unix socket (its JSON protocol: a version handshake, then commands)."""

    def __init__(self, path: Path, timeout: float = 120.0) -> None:
        self.path, self.timeout = path, timeout

    def command(self, name: str) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout)
            self._connect(conn)
            self._exchange(conn, json.dumps({"version": "0.2"}))
            answer = self._exchange(conn, json.dumps({"command": name}) + "\n")
        if answer.get("return") != "OK":
            raise ApplyError(f"suricata {name}: {answer.get('message')}")
        return answer.get("message")

    def _connect(self, conn: socket.socket) -> None:
        """The engine may be starting (a restart for a new configuration): wait for it."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn.connect(str(self.path))
                return
            except (FileNotFoundError, ConnectionRefusedError) as error:
                if time.monotonic() > deadline:
                    raise ApplyError(
                        f"{self.path}: Suricata's socket did not answer in {self.timeout:.0f} s "
                        "(see journalctl -u suricata)"
                    ) from error
                time.sleep(0.5)

    @staticmethod
    def _exchange(conn: socket.socket, message: str) -> dict[str, Any]:
        """One message out, one answer back: a JSON object ending with a newline."""
        conn.sendall(message.encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                raise ApplyError(f"suricata's socket closed mid-answer: {data[-200:]!r}")
            data += chunk
        try:
            answer: dict[str, Any] = json.loads(data)
        except ValueError as error:
            raise ApplyError(f"suricata's socket answered {data[-200:]!r}") from error
        return answer


def rules_stats(engine: Engine) -> tuple[int, int]:
    """(rules loaded, rules failed) of the running engine."""
    message = engine.command("ruleset-stats")
    stats = message[0] if isinstance(message, list) and message else {}
    return int(stats.get("rules_loaded", 0)), int(stats.get("rules_failed", 0))


def send_canary(token: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.sendto(f"kastro-canary-{token}".encode(), ("127.0.0.1", CANARY_PORT))


class Tail:
    """The whole new lines of a file since the last call; a rotated file is read from its
    start, a line longer than MAX_LINE is skipped."""

    def __init__(self, path: Path, from_end: bool = False) -> None:
        self.path = path
        self.inode, self.offset = 0, 0
        if from_end:  # only what is written from now on
            with contextlib.suppress(OSError):
                st = path.stat()
                self.inode, self.offset = st.st_ino, st.st_size

    def lines(self) -> list[bytes]:
        try:
            st = self.path.stat()
            if st.st_ino != self.inode or st.st_size < self.offset:
                self.inode, self.offset = st.st_ino, 0
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(MAX_EVE_TAIL)
        except OSError:
            return []
        whole = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(whole)
        return [line for line in whole.splitlines() if len(line) <= MAX_LINE]


def proves(line: bytes, token: str) -> bool:
    """An EVE line is the canary rule's alert naming this token, captured on the loopback: a
    packet to 127.0.0.1 forged on a mirrored port (the token is a digest of rules that may be
    public) proves nothing."""
    if b"kastro-canary" not in line and str(CANARY_SID).encode() not in line:
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    alert = record.get("alert") if isinstance(record, dict) else None
    return (
        isinstance(alert, dict)
        and record.get("in_iface") == "lo"
        and alert.get("signature_id") == CANARY_SID
        and token in str(alert.get("signature"))
    )


def prove(paths: Paths, token: str, wait: float) -> float:
    """Seconds from the canary packet to its alert; ApplyError when it never comes."""
    eve = Tail(paths.eve, from_end=True)
    began = time.monotonic()
    deadline = began + wait
    while time.monotonic() < deadline:
        send_canary(token)
        pause = time.monotonic() + 1.0
        while time.monotonic() < pause:
            if any(proves(line, token) for line in eve.lines()):
                return time.monotonic() - began
            time.sleep(0.1)
    raise ApplyError(
        f"the canary {token} raised no alert in {wait:.0f} s: the engine is not running this "
        "ruleset (is Suricata capturing on lo? see journalctl -u suricata)"
    )


def apply(paths: Paths, token: str, wait: float) -> dict[str, Any]:
    started = time.monotonic()
    test(paths)
    previous = paths.live.with_name(paths.live.name + ".previous")
    if paths.live.exists():
        shutil.copy2(paths.live, previous)
    _install(paths.candidate, paths.live)
    engine = Engine(paths.socket)
    try:
        engine.command("reload-rules")
        loaded, failed = rules_stats(engine)
        seconds = prove(paths, token, wait)
    except (ApplyError, OSError) as error:
        _roll_back(previous, paths, engine)
        raise ApplyError(f"{error}; the previous ruleset was put back") from error
    result = {
        "result": "live",
        "canary": token,
        "rules_loaded": loaded,
        "rules_failed": failed,
        "canary_seconds": round(seconds, 2),
        "seconds": round(time.monotonic() - started, 2),
    }
    write_metrics(paths, result)
    return result


def _install(source: Path, target: Path) -> None:
    staged = target.with_name(f".{target.name}.new")
    shutil.copyfile(source, staged)
    staged.chmod(0o644)
    staged.replace(target)


def _roll_back(previous: Path, paths: Paths, engine: Engine) -> None:
    if previous.exists():
        _install(previous, paths.live)
        with contextlib.suppress(ApplyError, OSError):  # else read at the engine's next start
            engine.command("reload-rules")


def write_metrics(paths: Paths, result: dict[str, Any]) -> None:
    """When the running ruleset went live and how long proving it took (the engine's own
    counts, rules loaded and failed, come from its stats: `collect`)."""
    stamp = int(paths.live.stat().st_mtime)
    lines = [
        "# HELP kastro_suricata_ruleset_timestamp_seconds When the running ruleset went live.",
        "# TYPE kastro_suricata_ruleset_timestamp_seconds gauge",
        f"kastro_suricata_ruleset_timestamp_seconds {stamp}",
        "# HELP kastro_suricata_reload_seconds Candidate to proven live, the last time.",
        "# TYPE kastro_suricata_reload_seconds gauge",
        f"kastro_suricata_reload_seconds {result['seconds']}",
    ]
    textfile.write_text(paths.metrics, "\n".join(lines) + "\n")


SEVERITIES = {1: "critical", 2: "warning", 3: "info"}
MAX_SIGNATURES = 500  # label sets kept; the rest are counted under sid "other"


class EveCollector:
    """The engine's latest stats record (stats.json) and every alert since this collector
    started (eve.json), read incrementally."""

    def __init__(self, eve: Path, stats: Path) -> None:
        self.files = {path: Tail(path) for path in (eve, stats)}
        self.stats: dict[str, Any] = {}
        self.stats_time = 0.0
        self.severities: dict[str, int] = {}
        self.signatures: dict[tuple[str, str], int] = {}

    def read(self) -> None:
        for tail in self.files.values():
            for line in tail.lines():
                self.take(line)

    def take(self, line: bytes) -> None:
        if b'"event_type":"stats"' not in line and b'"event_type":"alert"' not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        if record.get("event_type") == "stats" and isinstance(record.get("stats"), dict):
            self.stats, self.stats_time = record["stats"], _when(record.get("timestamp"))
        elif (
            record.get("event_type") == "alert"
            and isinstance(record.get("alert"), dict)
            and record["alert"].get("signature_id") != CANARY_SID  # a reload's proof, no attack
        ):
            self.count(record["alert"])

    def count(self, alert: dict[str, Any]) -> None:
        level = alert.get("severity")
        severity = SEVERITIES.get(level, "info") if isinstance(level, int) else "info"
        self.severities[severity] = self.severities.get(severity, 0) + 1
        key = (str(alert.get("signature_id", ""))[:12], str(alert.get("signature", ""))[:120])
        if key not in self.signatures and len(self.signatures) >= MAX_SIGNATURES:
            key = ("other", "")
        self.signatures[key] = self.signatures.get(key, 0) + 1

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.read()
        stats = self.stats
        number = _number_at
        for name, path, text in COUNTERS:
            if (value := number(stats, path)) is not None:
                yield CounterMetricFamily(f"kastro_suricata_{name}", text, value=value)
        memory = GaugeMetricFamily(
            "kastro_suricata_memory_bytes", "Memory in use by pool.", labels=["pool"]
        )
        for pool, path in MEMORY:
            if (value := number(stats, path)) is not None:
                memory.add_metric([pool], value)
        yield memory
        engines = (stats.get("detect") or {}).get("engines") or [{}]
        latest = engines[-1] if isinstance(engines[-1], dict) else {}
        for key, text in (("rules_loaded", "Rules the engine loaded."),
                          ("rules_failed", "Rules the engine could not load.")):  # fmt: skip
            if isinstance(latest.get(key), int):
                yield GaugeMetricFamily(f"kastro_suricata_{key}", text, value=latest[key])
        if self.stats_time:
            yield GaugeMetricFamily(
                "kastro_suricata_stats_timestamp_seconds",
                "When the engine last wrote its stats (it stops when the engine does).",
                value=self.stats_time,
            )
        by_severity = CounterMetricFamily(
            "kastro_suricata_alerts", "Alerts by severity.", labels=["severity"]
        )
        for severity in ("critical", "warning", "info"):
            by_severity.add_metric([severity], self.severities.get(severity, 0))
        yield by_severity
        by_signature = CounterMetricFamily(
            "kastro_suricata_signature_alerts", "Alerts by signature.", labels=["sid", "signature"]
        )
        for (sid, signature), n in sorted(self.signatures.items()):
            by_signature.add_metric([sid, signature], n)
        yield by_signature


COUNTERS = (
    ("capture_packets", "capture.kernel_packets", "Packets the kernel handed to Suricata."),
    (
        "capture_kernel_drops",
        "capture.kernel_drops",
        "Packets the kernel dropped (Suricata too slow).",
    ),
    ("decoder_bytes", "decoder.bytes", "Bytes decoded."),
    ("flows", "flow.total", "Flows seen."),
)
MEMORY = (
    ("flow", "flow.memuse"),
    ("tcp", "tcp.memuse"),
    ("reassembly", "tcp.reassembly_memuse"),
)


def _when(stamp: Any) -> float:
    """EVE's timestamp (2026-12-06T23:19:10.846494+0000) as seconds; 0 if it is not one."""
    try:
        return datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return 0.0


def _number_at(stats: dict[str, Any], path: str) -> float | None:
    value: Any = stats
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-suricata", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    run = actions.add_parser("apply", help="test, install, reload and prove a candidate ruleset")
    run.add_argument("--candidate", type=Path, required=True)
    run.add_argument("--live", type=Path, default=Path("/var/lib/suricata/rules/kastro.rules"))
    run.add_argument("--config", type=Path, default=Path("/etc/suricata/suricata.yaml"))
    run.add_argument("--socket", type=Path, default=Path("/run/suricata/suricata-command.socket"))
    run.add_argument("--eve", type=Path, default=Path("/var/log/suricata/eve.json"))
    run.add_argument(
        "--metrics",
        type=Path,
        default=Path("/var/lib/prometheus/node-exporter/kastro_suricata_ruleset.prom"),
    )
    run.add_argument("--canary", required=True, help="the ruleset's 16-hex-digit token")
    run.add_argument("--wait", type=float, default=60.0, help="seconds for the canary's alert")
    collect = textfile.add_collect_command(
        actions, "/var/lib/prometheus/node-exporter/kastro_suricata.prom", 15.0,
        "the engine's counters and alerts (from eve.json)",
    )  # fmt: skip
    collect.add_argument("--eve", type=Path, default=Path("/var/log/suricata/eve.json"))
    collect.add_argument("--stats", type=Path, default=Path("/var/log/suricata/stats.json"))
    args = parser.parse_args(argv)
    if args.action == "collect":
        collector = EveCollector(args.eve, args.stats)
        textfile.publish(collector, args.output, args.interval, "kastro_suricata", args.once)
        return 0
    if not TOKEN.fullmatch(args.canary) or not 1 <= args.wait <= 600:
        print("kastro-suricata: --canary is 16 hex digits, --wait 1 to 600 s", file=sys.stderr)
        return 2
    paths = Paths(args.candidate, args.live, args.config, args.socket, args.eve, args.metrics)
    try:
        print(json.dumps(apply(paths, args.canary, args.wait)))
    except (ApplyError, commands.CommandError, OSError) as error:
        print(json.dumps({"result": "rejected", "error": str(error)}))
        print(f"kastro-suricata: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
