"""The services the monitoring hosts probe, derived from the policy in one place.

Each TCP service the policy lets anyone reach on a server is probed from the monitoring hosts
(blackbox_exporter): HTTP and HTTPS with a real request (and the certificate's expiry read),
DNS with a real query, any other TCP service with a TCP connect. Two compilers use the same
list: the monitoring targets (what is probed, kastro.monitoring.targets) and the firewalls
(which admit exactly those probes from the monitoring hosts, and nothing more), so a probe is
never dropped by a firewall the same inventory built, and a firewall never admits a probe
nobody makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kastro.inventory.model import parse_port
from kastro.inventory.plan import management_address


@dataclass(frozen=True, order=True)
class Probe:
    """One probe: of `service` on `host` (at `address`), with blackbox's `module`."""

    host: str
    address: str
    protocol: str  # tcp or udp
    port: int
    module: str  # http, https, dns or tcp_connect (kastro.monitoring.deploy.blackbox_config)
    service: str


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _destination_hosts(plan: Mapping[str, Any], destination: str) -> list[str]:
    """Servers in a policy destination: 'cityhall.servers', every building's 'servers', or
    one host by name."""
    found = []
    for name, entry in sorted((plan.get("hosts") or {}).items()):
        zone = str(entry.get("zone") or "")
        if entry.get("role") == "server" and (
            name == destination or zone == destination or zone.endswith(f".{destination}")
        ):
            found.append(name)
    return found


# The ports web servers answer on by convention: a real request there, not just a connect.
HTTP_PORTS = frozenset({80, 8080})
HTTPS_PORTS = frozenset({443, 8443})


def _tcp_module(port: int) -> str:
    if port in HTTPS_PORTS:
        return "https"
    return "http" if port in HTTP_PORTS else "tcp_connect"


def _modules(services: Mapping[str, Any], service: str) -> list[tuple[str, str, int]]:
    """(module, protocol, port) for each probe of a service (the first port of a range).

    UDP services are left out: an unanswered UDP probe proves nothing without the protocol's
    own request; DNS (udp/53) gets blackbox's DNS module instead."""
    texts = (services.get(service) or {}).get("ports") or []
    ports = [port for port, _ in map(parse_port, texts) if port is not None]
    if any(p.protocol == "udp" and p.first == 53 for p in ports):
        return [("dns", "udp", 53)]
    return [(_tcp_module(p.first), "tcp", p.first) for p in ports if p.protocol == "tcp"]


def service_probes(variables: Mapping[str, Any]) -> list[Probe]:
    """Every probe the policy implies, once per (host, protocol, port), sorted."""
    plan = variables.get("kastro_plan") or {}
    services = variables.get("kastro_services") or {}
    found: dict[tuple[str, str, int], Probe] = {}
    for rule in variables.get("kastro_policy") or []:
        for destination in _as_list(rule.get("to")):
            for host in _destination_hosts(plan, destination):
                address = management_address(plan, host)
                for service in _as_list(rule.get("services")):
                    for module, protocol, port in _modules(services, service):
                        probe = Probe(host, address, protocol, port, module, service)
                        found.setdefault((host, protocol, port), probe)
    return sorted(found.values())
