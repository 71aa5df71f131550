"""What Prometheus scrapes and what blackbox_exporter probes, compiled from the model and plan.

Every exporter Kastro deploys follows from the inventory: node_exporter on every managed host,
the host firewall's exporter on gateways, servers and sensors, the links exporter on each
gateway with links, the VPN's on the host that runs it, the monitors' on each sensor. Each
target carries the labels an alert needs to reach the right person (municipality, building,
zone, role, host). Adding a building adds its targets; nothing is typed by hand.

`variables` are the model's inventory variables (kastro_buildings, kastro_links, kastro_plan,
kastro_policy, kastro_services, kastro_municipality, kastro_teleworker_groups), as the per-host
state in kastro.controller.state takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.controller.state import vpn_server
from kastro.inventory import probes
from kastro.inventory.plan import management_address

# Exporter ports: the roles' defaults (a test checks they match the roles' defaults files).
PORTS: dict[str, int] = {
    "node": 9100,
    "monitor": 9550,
    "firewall": 9552,
    "telework": 9553,
    "links": 9554,
}
MANAGED_ROLES = ("gateway", "server", "sensor")


def _plan(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    return variables.get("kastro_plan") or {}


def host_labels(variables: Mapping[str, Any], host: str) -> dict[str, str]:
    """The labels every series of `host` carries: who to call and where the host stands."""
    entry = (_plan(variables).get("hosts") or {}).get(host) or {}
    building = str(entry.get("building") or "")
    # The plan names a zone with its building ('cityhall.servers'); the label is the zone's own.
    zone = str(entry.get("zone") or ("management" if entry.get("role") == "gateway" else ""))
    zone = zone.rpartition(".")[2]
    return {
        "municipality": str((variables.get("kastro_municipality") or {}).get("name") or ""),
        "building": building,
        "zone": zone,
        "role": str(entry.get("role") or ""),
        "host": host,
    }


def _exporters(variables: Mapping[str, Any], host: str, entry: Mapping[str, Any]) -> list[str]:
    role = entry.get("role")
    if role not in MANAGED_ROLES:
        return []
    jobs = ["node", "firewall"]
    if role == "sensor":
        jobs.append("monitor")
    if role == "gateway" and _has_links(variables, host):
        jobs.append("links")
    if vpn_server(variables, host):
        jobs.append("telework")
    return jobs


def _has_links(variables: Mapping[str, Any], host: str) -> bool:
    for link in (_plan(variables).get("links") or {}).values():
        if any(end.get("gateway") == host for end in (link.get("ends") or {}).values()):
            return True
    return False


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _probe_target(probe: probes.Probe) -> str:
    """What blackbox_exporter is given: a URL for its HTTP prober (which reads a target
    without a scheme as http://, so an HTTPS probe needs https://), address:port otherwise."""
    target = _target(probe.address, probe.port)
    return f"{probe.module}://{target}/" if probe.module in ("http", "https") else target


def scrape_jobs(variables: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Job name -> file_sd target groups (one per host, so each has its own labels)."""
    plan = _plan(variables)
    jobs: dict[str, list[dict[str, Any]]] = {name: [] for name in PORTS}
    for host in sorted(plan.get("hosts") or {}):
        address = management_address(plan, host)
        labels = host_labels(variables, host)
        for job in _exporters(variables, host, plan["hosts"][host]):
            jobs[job].append({"targets": [_target(address, PORTS[job])], "labels": labels})
    return {name: groups for name, groups in jobs.items() if groups}


def link_probes(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An ICMP probe of each end of each link, from the monitoring host: its far end is seen
    from the city hall even when the gateway's own exporter cannot be scraped."""
    groups = []
    for name, link in sorted((_plan(variables).get("links") or {}).items()):
        for building, end in sorted((link.get("ends") or {}).items()):
            if not end.get("ipv4"):
                continue
            labels = host_labels(variables, str(end.get("gateway")))
            groups.append(
                {"targets": [str(end["ipv4"])], "labels": {**labels, "link": name, "end": building}}
            )
    return groups


def service_probes(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A probe of each TCP service (and DNS) the policy lets people reach on a server
    (kastro.inventory.probes, which the firewalls admit as well)."""
    groups = [
        {
            "targets": [_probe_target(probe)],
            "labels": {
                **host_labels(variables, probe.host),
                "service": probe.service,
                "module": probe.module,
            },
        }
        for probe in probes.service_probes(variables)
    ]
    return sorted(groups, key=lambda g: (g["labels"]["host"], g["targets"][0]))
