"""The monitoring stack's numbers on a running lab (after `make demo`, or any `kastro lab up`
+ site.yml): series, scrape duration, Prometheus' memory, rule evaluation time, and the time
from the start of the built-in attack to the alert in Alertmanager and the SOC's e-mail.

    .venv/bin/python benchmarks/monitoring.py --inventory inventory/example --lab kastro

Numbers, not a test (see benchmarks/README.md). Goal (#17): at most 20,000 series for a
12-building town. The peer measured in the same run is the monitoring host's own
node_exporter (its series and memory), so that the ratios survive a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kastro.lab import attack  # noqa: E402
from kastro.lab.hosts import container_name, podman  # noqa: E402

QUERIES = {
    "series": "count({__name__=~'.+'})",
    "series_node_exporter": "count({job='node'})",
    "targets": "count(up)",
    "targets_up": "count(up == 1)",
    "scrape_seconds_max": "max(scrape_duration_seconds)",
    "scrape_seconds_p50": "quantile(0.5, scrape_duration_seconds)",
    "prometheus_rss_mb": "process_resident_memory_bytes{job='prometheus'} / 2^20",
    "alertmanager_rss_mb": "process_resident_memory_bytes{job='alertmanager'} / 2^20",
    "rule_eval_ms": "sum(prometheus_rule_group_last_duration_seconds) * 1000",
}


def query(lab: str, where: attack.Targets, promql: str) -> float | None:
    url = f"https://{where.host}:9090/api/v1/query?query={urllib.parse.quote(promql)}"
    out = podman(
        "exec", container_name(lab, where.monitor), "python3", "-c", attack.QUERY, url
    ).stdout
    result = json.loads(out)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def node_rss_mb(lab: str, monitor: str) -> float:
    pid = podman(
        "exec", container_name(lab, monitor), "systemctl", "show", "-p", "MainPID", "--value",
        "prometheus-node-exporter",
    ).stdout.strip()  # fmt: skip
    status = podman("exec", container_name(lab, monitor), "cat", f"/proc/{pid}/status").stdout
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventory/example")
    parser.add_argument("--lab", default="kastro")
    parser.add_argument("--no-attack", action="store_true", help="numbers only, no scan")
    args = parser.parse_args()
    inventory = Path(args.inventory)
    where = attack.targets(inventory)
    numbers = {name: query(args.lab, where, q) for name, q in QUERIES.items()}
    numbers["node_exporter_rss_mb"] = node_rss_mb(args.lab, where.monitor)
    if not args.no_attack:
        outcome = attack.run(inventory, args.lab)
        numbers["attack_to_alertmanager_and_email_s"] = outcome.seconds
    for name, value in numbers.items():
        print(f"{name:36} {value if value is None else round(value, 3)}")
    series, node = numbers["series"], numbers["series_node_exporter"]
    if series and node:
        print(f"{'series / node_exporter series':36} {series / node:.2f}")
    if numbers["prometheus_rss_mb"]:
        ratio = numbers["prometheus_rss_mb"] / numbers["node_exporter_rss_mb"]
        print(f"{'Prometheus RSS / node_exporter RSS':36} {ratio:.2f}")
    print(f"{'goal: series <= 20000':36} {'met' if series and series <= 20000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
