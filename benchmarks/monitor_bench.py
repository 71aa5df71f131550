"""Benchmark: Kastro's monitor against Suricata and a naive scapy loop, on the same pcap.

    python benchmarks/monitor_bench.py            # offline: 1,000,000 packets
    python benchmarks/monitor_bench.py --live     # also: replay over a veth at several rates

Prints packets per second of each, the ratios to Suricata (single runmode, the rules it
ships), peak RSS, and the detection latency of each labelled attack (traffic time from the
attack's first packet to its alert). The machine is shared and noisy: compare the ratios,
not the absolute numbers. Not a test; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTED = {
    "portscan": 9100001,
    "synflood": 9100006,
    "dnstunnel": 9100031,
    "bruteforce": 9100041,
    "arpspoof": 9100021,
    "sweep": 9100011,
}


def timed(
    argv: list[str], **kwargs: object
) -> tuple[float, int, subprocess.CompletedProcess[str] | None]:
    """Wall seconds and peak RSS (KiB) of a child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if proc.returncode != 0:
        print(f"  {argv[0]} failed ({proc.returncode}): {err.strip()[-500:]}")
        return elapsed, usage.ru_maxrss, None
    return elapsed, usage.ru_maxrss, subprocess.CompletedProcess(argv, 0, out, err)


def detector_count() -> int:
    """In a child: importing the monitor here would grow this process, and children forked
    from it start their peak RSS at its size."""
    code = (
        "from monitors.config import MonitorConfig; print(len(MonitorConfig().build_detectors()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def stock_rules(workdir: Path) -> Path:
    rules = workdir / "stock.rules"
    texts = [
        p.read_text(errors="replace") for p in sorted(Path("/etc/suricata/rules").glob("*.rules"))
    ]
    rules.write_text("\n".join(texts))
    return rules


def run_offline(packets: int, workdir: Path) -> None:
    pcap = workdir / "bench.pcap"
    print(f"generating {packets:,} packets (deterministic) ...")
    # In a child process, so this process stays small: a forked child's peak RSS starts
    # at its parent's size.
    subprocess.run(
        [sys.executable, str(HERE / "make_pcap.py"), str(pcap), "--packets", str(packets)],
        check=True,
    )
    labels = json.loads(pcap.with_suffix(".labels.json").read_text())
    size = pcap.stat().st_size
    print(f"  {pcap} ({size / 2**20:.0f} MiB)")
    rows = []

    eve = workdir / "kastro-eve.json"
    secs, rss, ok = timed(
        [sys.executable, "-m", "monitors", "--pcap", str(pcap), "--eve-log", str(eve)],
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    rows.append((f"kastro monitor (all {detector_count()} detectors)", packets, secs, rss))

    suricata = shutil.which("suricata")
    if suricata:
        logdir = workdir / "suricata"
        logdir.mkdir()
        rules = stock_rules(workdir)
        secs_s, rss_s, ok_s = timed(
            [
                suricata,
                "-r",
                str(pcap),
                "--runmode",
                "single",
                "-k",
                "none",
                "-S",
                str(rules),
                "-l",
                str(logdir),
            ]
        )
        if ok_s:
            rows.append(("suricata -r (single runmode, shipped rules)", packets, secs_s, rss_s))
    else:
        print(
            "  suricata is not installed (apt-get install -t bookworm-backports suricata): skipped"
        )

    subset = 50_000
    code = (
        "import sys,time\nfrom scapy.utils import PcapReader\nn=0\nt=time.perf_counter()\n"
        f"for p in PcapReader(sys.argv[1]):\n  n+=1\n  p.summary()\n  if n>={subset}: break\n"
        "print(n, time.perf_counter()-t)"
    )
    _, rss_p, ok_p = timed([sys.executable, "-c", code, str(pcap)])
    if ok_p:
        n, secs_p = ok_p.stdout.split()
        rows.append(
            (f"scapy PcapReader loop (first {subset:,} packets)", int(n), float(secs_p), rss_p)
        )

    base = next((r for r in rows if r[0].startswith("suricata")), None)
    header = f"{'packets':>10} {'seconds':>8} {'packets/s':>11} {'vs suricata':>11} {'RSS':>10}"
    print(f"\n{'tool':48} {header}")
    for name, count, secs, rss in rows:
        pps = count / secs
        ratio = f"{pps / (base[1] / base[2]):.2f}x" if base else "-"
        print(
            f"{name:48} {count:>10,} {secs:>8.2f} {pps:>11,.0f} {ratio:>11} {rss / 1024:>8.0f} MiB"
        )
    if base:
        kastro_rss = rows[0][3]
        print(f"peak RSS kastro / suricata: {kastro_rss / base[3]:.2f}")

    alerts = [json.loads(line) for line in eve.read_text().splitlines()] if ok else []
    print("\ndetection latency (traffic time from an attack's first packet to its first alert):")
    for label, start in labels.items():
        sid = EXPECTED[label]
        times = [
            datetime.strptime(a["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            for a in alerts
            if a["alert"]["signature_id"] == sid
        ]
        found = [t for t in times if t >= start - 1e-6]
        latency = f"{(min(found) - start) * 1000:8.1f} ms" if found else "  missed"
        print(f"  {label:12} sid {sid}: {latency}")
    print(f"alerts written: {len(alerts)} (repeats are deduplicated)")


def run_live(workdir: Path, rates: list[int], count: int) -> None:
    tcpreplay = shutil.which("tcpreplay")
    if tcpreplay is None:
        print("\nlive mode needs tcpreplay (apt-get install tcpreplay): skipped")
        return
    pcap = workdir / "live.pcap"
    subprocess.run(
        [sys.executable, str(HERE / "make_pcap.py"), str(pcap), "--packets", str(count)], check=True
    )
    print(f"\nlive: tcpreplay -> veth -> kastro monitor (TPACKET_V3), {count:,} packets per rate")
    print(
        f"{'offered pps':>12} {'achieved pps':>13} {'kernel saw':>11} {'dropped':>8} {'drop %':>7}"
    )
    for rate in rates:
        for ns in ("kb-send", "kb-recv"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(
            [
                "ip",
                "-n",
                "kb-send",
                "link",
                "add",
                "send0",
                "type",
                "veth",
                "peer",
                "name",
                "recv0",
                "netns",
                "kb-recv",
            ],
            check=True,
        )
        for ns, dev in (("kb-send", "send0"), ("kb-recv", "recv0")):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        metrics = workdir / f"live-{rate}.prom"
        monitor = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "kb-recv",
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
                str(count / rate + 8),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )
        time.sleep(2)
        replay = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                "kb-send",
                tcpreplay,
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
        )
        monitor.wait(timeout=count / rate + 60)
        achieved = "?"
        for line in replay.stdout.splitlines():  # "Rated: 1234.5 Bps, 0.01 Mbps, 49985.12 pps"
            if line.strip().startswith("Rated:") and "pps" in line:
                achieved = f"{float(line.split(',')[-1].split()[0]):,.0f}"
        text = metrics.read_text() if metrics.exists() else ""
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("kastro_monitor_capture_")
        }
        seen = values.get("kastro_monitor_capture_packets_total", 0)
        dropped = values.get("kastro_monitor_capture_drops_total", 0)
        share = 100 * dropped / seen if seen else 0.0
        print(f"{rate:>12,} {achieved:>13} {seen:>11,.0f} {dropped:>8,.0f} {share:>6.2f}%")
        for ns in ("kb-send", "kb-recv"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument(
        "--live", action="store_true", help="also replay over a veth pair (needs root)"
    )
    parser.add_argument(
        "--rates", default="20000,50000,100000,150000", help="offered packets/s for --live"
    )
    parser.add_argument("--live-packets", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kastro-bench-") as tmp:
        run_offline(args.packets, Path(tmp))
        if args.live:
            run_live(Path(tmp), [int(r) for r in args.rates.split(",")], args.live_packets)


if __name__ == "__main__":
    main()
