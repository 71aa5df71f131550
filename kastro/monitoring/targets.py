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
from kastro.inventory.model import parse_port
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


def _destination_hosts(variables: Mapping[str, Any], destination: str) -> list[str]:
    """Servers in a policy destination: 'cityhall.servers', every building's 'servers', or
    one host by name."""
    hosts = _plan(variables).get("hosts") or {}
    found = []
    for name, entry in sorted(hosts.items()):
        zone = str(entry.get("zone") or "")
        if entry.get("role") == "server" and (
            name == destination or zone == destination or zone.endswith(f".{destination}")
        ):
            found.append(name)
    return found


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def service_probes(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A TCP connect probe of each TCP service the policy lets people reach on a server.

    UDP services are left out: an unanswered UDP probe proves nothing without the protocol's
    own request, and blackbox's DNS module is used for DNS instead (module 'dns')."""
    plan = _plan(variables)
    seen: set[tuple[str, str, int]] = set()
    groups = []
    for rule in variables.get("kastro_policy") or []:
        for destination in _as_list(rule.get("to")):
            for host in _destination_hosts(variables, destination):
                address = management_address(plan, host)
                for service in _as_list(rule.get("services")):
                    for module, port in _probe_modules(variables, service):
                        key = (host, module, port)
                        if key in seen:
                            continue
                        seen.add(key)
                        labels = {**host_labels(variables, host), "service": service}
                        groups.append(
                            {
                                "targets": [_target(address, port)],
                                "labels": {**labels, "module": module},
                            }
                        )
    return sorted(groups, key=lambda g: (g["labels"]["host"], g["targets"][0]))


def _probe_modules(variables: Mapping[str, Any], service: str) -> list[tuple[str, int]]:
    """The blackbox module and port for each probe of a service (the first port of a range)."""
    texts = ((variables.get("kastro_services") or {}).get(service) or {}).get("ports") or []
    ports = [port for port, _ in map(parse_port, texts) if port is not None]
    if any(p.protocol == "udp" and p.first == 53 for p in ports):
        return [("dns", 53)]
    return [("tcp_connect", p.first) for p in ports if p.protocol == "tcp"]
