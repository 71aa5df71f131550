"""Prometheus' configuration for one municipality, and the target files it reads.

The scrape jobs read their targets from file_sd JSON files (one per job, from
kastro.monitoring.targets), so a new building changes files Prometheus re-reads by itself,
not its configuration. Probes go through blackbox_exporter on the monitoring host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.monitoring import targets

BLACKBOX = "127.0.0.1:9115"


def _blackbox_job(name: str, file: str) -> dict[str, Any]:
    return {
        "job_name": name,
        "metrics_path": "/probe",
        "file_sd_configs": [{"files": [file]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["module"], "target_label": "__param_module"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": BLACKBOX},
        ],
    }


def target_files(variables: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """File name -> file_sd content: one per scrape job, and the probes."""
    files = {f"{job}.json": groups for job, groups in targets.scrape_jobs(variables).items()}
    links = [
        {**group, "labels": {**group["labels"], "module": "icmp"}}
        for group in targets.link_probes(variables)
    ]
    files["blackbox-links.json"] = links
    files["blackbox-services.json"] = targets.service_probes(variables)
    return files


def config(
    variables: Mapping[str, Any], directory: str, alertmanager: str = "127.0.0.1:9093"
) -> dict[str, Any]:
    """prometheus.yml as data; `directory` holds the rule and target files."""
    municipality = str((variables.get("kastro_municipality") or {}).get("name") or "")
    jobs: list[dict[str, Any]] = [
        {"job_name": job, "file_sd_configs": [{"files": [f"{directory}/targets/{job}.json"]}]}
        for job in targets.scrape_jobs(variables)
    ]
    jobs.append(_blackbox_job("blackbox-links", f"{directory}/targets/blackbox-links.json"))
    jobs.append(_blackbox_job("blackbox-services", f"{directory}/targets/blackbox-services.json"))
    return {
        "global": {
            "scrape_interval": "15s",
            "evaluation_interval": "15s",
            "external_labels": {"municipality": municipality},
        },
        "rule_files": [f"{directory}/rules/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": jobs,
    }
