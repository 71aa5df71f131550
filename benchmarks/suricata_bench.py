"""Benchmark: Suricata as the suricata role runs it, on one and two cores, against the Kastro
monitor on the same traffic in the same run.

    python benchmarks/suricata_bench.py            # needs root, suricata, tcpreplay

For two rule sets, the example municipality's (Kastro's pack and the engine's event rules, as
site.yml deploys it) and a generated large one (30,000 rules of realistic shapes: HTTP URIs and
user agents, TLS SNI, DNS names, IP lists, TCP payload with offsets; no large public set can be
had offline), it measures:

- live throughput: tcpreplay at rising rates over a veth pair between two namespaces the script
  creates, Suricata (af-packet, the role's configuration template) capturing with 1 and with 2
  threads; the highest rate with kernel drops at most 1 % (capture.kernel_drops from its
  stats), and its peak RSS;
- the reload: `kastro-suricata apply` (suricata -T, reload-rules over the socket, the canary
  proven), seconds;
- the Kastro monitor at the same rates, the peer.

The machine is shared and noisy: read the ratios. Not a test; nothing here asserts. Every
packet stays inside the two namespaces; every replay is bounded by --limit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from kastro.controller.model_vars import model_variables  # noqa: E402
from kastro.suricata import config, ruleset  # noqa: E402

SEND, RECV = "ksb-send", "ksb-recv"


def large_rules(count: int, seed: int = 7) -> str:
    """`count` rules of the shapes real sets have; deterministic."""
    rng = random.Random(seed)
    words = [
        "admin",
        "login",
        "wp",
        "api",
        "cgi",
        "shell",
        "upload",
        "backup",
        "config",
        "php",
        "jsp",
        "exec",
        "cmd",
        "debug",
        "test",
        "old",
        "tmp",
        "xmlrpc",
        "portal",
        "auth",
    ]
    lines = []
    for n in range(count):
        sid = 3_000_000 + n
        token = "".join(rng.choice(words) for _ in range(2)) + f"{n:x}"
        shape = n % 6
        if shape == 0:
            body = f'flow:established,to_server; http.uri; content:"/{token}"; nocase;'
            head = "alert http any any -> $HOME_NET any"
        elif shape == 1:
            body = f'flow:established,to_server; http.user_agent; content:"{token}";'
            head = "alert http $HOME_NET any -> any any"
        elif shape == 2:
            body = f'tls.sni; content:"{token}.example"; endswith;'
            head = "alert tls $HOME_NET any -> any any"
        elif shape == 3:
            body = f'dns.query; content:"{token}.example.net"; nocase;'
            head = "alert dns $HOME_NET any -> any any"
        elif shape == 4:
            nets = ",".join(
                f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(256)}"
                for _ in range(4)
            )
            body = "threshold:type limit, track by_src, count 1, seconds 3600;"
            head = f"alert ip [{nets}] any -> $HOME_NET any"
        else:
            body = (
                f'flow:established; content:"|{rng.randrange(256):02x} {rng.randrange(256):02x}|'
                f'{token[:6]}"; offset:{rng.randrange(8)}; depth:64;'
            )
            head = "alert tcp any any -> $HOME_NET any"
        lines.append(f'{head} (msg:"BENCH {token}"; {body} sid:{sid}; rev:1;)')
    return "\n".join(lines) + "\n"


def namespaces() -> None:
    for ns in (SEND, RECV):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(
        [
            "ip",
            "-n",
            SEND,
            "link",
            "add",
            "send0",
            "type",
            "veth",
            "peer",
            "name",
            "recv0",
            "netns",
            RECV,
        ],
        check=True,
    )
    for ns, dev in ((SEND, "send0"), (RECV, "recv0"), (RECV, "lo")):
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)


def render(folder: Path, variables: dict[str, Any], threads: int) -> Path:
    import jinja2
    import yaml

    defaults = yaml.safe_load((ROOT / "roles/suricata/defaults/main.yml").read_text())
    values = {
        **{k: v for k, v in defaults.items() if "{{" not in str(v)},
        "suricata_vars": variables,
        "suricata_interfaces": ["recv0"],
        "suricata_threads": threads,
        "suricata_log_dir": str(folder / "log"),
        "suricata_rules_dir": str(folder / "rules"),
        "suricata_socket": str(folder / "command.socket"),
        "suricata_threshold_lines": [],
        "ansible_managed": "benchmark",
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "roles/suricata/templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(default=False, default_for_string=False),
    )
    env.filters["to_json"] = json.dumps
    text = env.get_template("etc/suricata/suricata.yaml.j2").render(values)
    path = folder / "suricata.yaml"
    path.write_text(text.replace("interval: 15", "interval: 1"))
    return path


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stats_records(folder: Path) -> list[tuple[float, dict[str, Any]]]:
    """The engine's stats records (one a second): when each was written, and its counters."""
    path = folder / "log" / "stats.json"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        written = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        out.append((written, record["stats"]))
    return out


def counters_after(folder: Path, moment: float) -> dict[str, Any]:
    """The capture counters once the engine has caught up with what was sent before
    ``moment``: three records in a row, written after it, with the same kernel count, and the
    decoder has taken every packet the kernel handed over. A busy engine reads the kernel's
    counters only between batches, so a single record can lag by seconds (measured: 4,136 of
    20,014 packets three seconds after a replay, with 2,335 rules). Empty ("unread") if it has
    not within 20 s: a full run with a 60 s wait outlasted 25 minutes (stop 41)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        recent = [s for w, s in stats_records(folder) if w >= moment][-3:]
        kernel = {s.get("capture", {}).get("kernel_packets") for s in recent}
        if len(recent) == 3 and len(kernel) == 1:
            capture = recent[-1].get("capture", {})
            taken = recent[-1].get("decoder", {}).get("pkts", 0)
            if capture and taken >= capture["kernel_packets"] - capture.get("kernel_drops", 0):
                return capture
        time.sleep(0.5)
    return {}


def replay(pcap: Path, rate: int, count: int) -> tuple[int, float]:
    """tcpreplay at ``rate`` pps; the packets it really sent and the rate it really reached
    (a busy machine may not reach the offered rate: the report shows both)."""
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            SEND,
            "tcpreplay",
            "-q",
            "-i",
            "send0",
            f"--pps={rate}",
            "--limit",
            str(count),
            str(pcap),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=count / rate + 60,
    )
    sent = re.search(r"Actual: (\d+) packets", done.stdout)
    pps = re.search(r"Rated: .*?([\d.]+) pps", done.stdout)
    return (int(sent.group(1)) if sent else 0), (float(pps.group(1)) if pps else 0.0)


def suricata_at(
    folder: Path, conf: Path, built: ruleset.Built, pcap: Path, rates: list[int], count: int
) -> dict[str, Any]:
    (folder / "log").mkdir(parents=True, exist_ok=True)
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "kastro.rules").write_text("")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", RECV, "suricata", "--af-packet", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result: dict[str, Any] = {"rates": {}}
    try:
        (folder / "candidate.rules").write_text(built.text)
        started = time.monotonic()
        applied = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                RECV,
                sys.executable,
                "-m",
                "kastro.host.suricata",
                "apply",
                "--candidate",
                str(folder / "candidate.rules"),
                "--live",
                str(folder / "rules" / "kastro.rules"),
                "--config",
                str(conf),
                "--socket",
                str(folder / "command.socket"),
                "--eve",
                str(folder / "log" / "eve.json"),
                "--metrics",
                str(folder / "ruleset.prom"),
                "--canary",
                built.canary,
                "--wait",
                "120",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        result["apply"] = json.loads(applied.stdout or "{}")
        result["apply_wall"] = time.monotonic() - started
        for rate in rates:
            before = counters_after(folder, time.time())
            sent, achieved = replay(pcap, rate, count)
            after = counters_after(folder, time.time())
            seen = after.get("kernel_packets", 0) - before.get("kernel_packets", 0)
            dropped = after.get("kernel_drops", 0) - before.get("kernel_drops", 0)
            result["rates"][rate] = (seen, dropped, sent, achieved)
        result["rss"] = max(peak_rss_mib(p) for p in _children(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return result


def _children(pid: int) -> list[int]:
    found = [pid]
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    for child in out.stdout.split():
        found += _children(int(child))
    return found


def monitor_at(folder: Path, pcap: Path, rates: list[int], count: int) -> dict[str, Any]:
    result: dict[str, Any] = {"rates": {}}
    for rate in rates:
        metrics = folder / f"monitor-{rate}.prom"
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                RECV,
                sys.executable,
                "-m",
                "monitors",
                "--iface",
                "recv0",
                "--eve-log",
                "/dev/null",
                "--metrics-file",
                str(metrics),
                "--duration",
                str(count / rate + 6),
            ],
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        time.sleep(2)
        sent, achieved = replay(pcap, rate, count)
        _, _, usage = os.wait4(proc.pid, 0)
        result["rss"] = max(result.get("rss", 0), usage.ru_maxrss / 1024)
        values = {
            line.split()[0]: float(line.split()[1])
            for line in (metrics.read_text() if metrics.exists() else "").splitlines()
            if line.startswith("kastro_monitor_capture_")
        }
        result["rates"][rate] = (
            values.get("kastro_monitor_capture_packets_total", 0),
            values.get("kastro_monitor_capture_drops_total", 0),
            sent,
            achieved,
        )
    return result


def lost(seen: float, dropped: float, sent: int) -> float:
    """Packets lost: dropped by the kernel, or sent and never seen by the capture at all."""
    return dropped + max(0, sent - seen)


def best(rates: dict[int, Any]) -> int:
    """The highest offered rate below the first one that lost more than 1 % of what tcpreplay
    sent; a rate whose counters were never read (nothing seen) stops the climb too."""
    top = 0
    for rate in sorted(rates):
        seen, dropped, sent, _ = rates[rate]
        if not seen or lost(seen, dropped, sent) > 0.01 * max(sent, seen):
            break
        top = rate
    return top


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packets", type=int, default=200_000, help="per rate")
    parser.add_argument("--rates", default="20000,50000,100000,150000,200000")
    parser.add_argument("--large", type=int, default=30_000, help="rules in the large set")
    args = parser.parse_args()
    if os.geteuid() != 0 or not (shutil.which("suricata") and shutil.which("tcpreplay")):
        sys.exit("needs root, suricata (bookworm-backports) and tcpreplay: make bench")
    rates = [int(r) for r in args.rates.split(",")]
    variables = config.variables(model_variables(str(ROOT / "inventory" / "example")))
    example = ruleset.build([], ruleset.Tuning(), variables)
    large = ruleset.with_canary(
        example.text.rsplit("alert udp any any -> 127.0.0.1", 1)[0] + large_rules(args.large)
    )
    with tempfile.TemporaryDirectory(prefix="kastro-sbench-") as tmp:
        work = Path(tmp)
        pcap = work / "traffic.pcap"
        subprocess.run(
            [sys.executable, str(HERE / "make_pcap.py"), str(pcap), "--packets", str(args.packets)],
            check=True,
            capture_output=True,
        )
        namespaces()
        try:
            rows: list[tuple[str, str, dict[str, Any]]] = []
            monitor = monitor_at(work, pcap, rates, args.packets)
            rows.append(("kastro monitor", "-", monitor))
            for name, built in (("example", example), (f"large ({args.large:,})", large)):
                for threads in (1, 2):
                    folder = work / f"{name.split()[0]}-{threads}"
                    folder.mkdir()
                    conf = render(folder, variables, threads)
                    rows.append(
                        (
                            f"suricata {name}",
                            str(threads),
                            suricata_at(folder, conf, built, pcap, rates, args.packets),
                        )
                    )
        finally:
            for ns in (SEND, RECV):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    report(rows, rates, monitor)


def report(rows: list[Any], rates: list[int], monitor: dict[str, Any]) -> None:
    peer = best(monitor["rates"]) or 1
    print(
        f"\n{'engine':32} {'threads':>7} "
        + " ".join(f"{r // 1000:>6}k" for r in rates)
        + f" {'best':>8} {'vs monitor':>10} {'RSS':>8} {'reload':>8} {'rules':>7}"
    )
    for name, threads, result in rows:
        drops = " ".join(
            f"{100 * lost(s, d, n) / max(n, s):>6.1f}%" if s else "  unread"
            for s, d, n, _ in (result["rates"][r] for r in rates)
        )
        top = best(result["rates"])
        apply = result.get("apply") or {}
        print(
            f"{name:32} {threads!s:>7} {drops} {top:>8,} {top / peer:>9.2f}x "
            f"{result.get('rss', 0):>6.0f}Mi {apply.get('seconds', 0):>7.1f}s "
            f"{apply.get('rules_loaded', '-')!s:>7}"
        )
    print("columns per rate: packets lost (kernel drops + sent but never captured) over sent;")
    print("best: highest offered rate with at most 1 % lost")
    for name, threads, result in rows:
        reached = ", ".join(f"{r // 1000}k→{result['rates'][r][3] / 1000:.0f}k" for r in rates)
        print(f"tcpreplay offered→reached pps, {name} ({threads}): {reached}")


if __name__ == "__main__":
    main()
