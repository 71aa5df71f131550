"""The gateways a decision goes to, read from the same inventory Ansible uses.

Ansible's own inventory classes read the files (host_vars, group_vars, the lab's overlay),
so `kastro respond` reaches exactly the hosts `ansible-playbook` reaches, the same way
(address, user, key, known_hosts). Each gateway's allowlist is the one its firewall role
compiles: the management zones of every building, firewall_management_extra_networks and
firewall_allowlist.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kastro.controller.model_vars import with_model
from kastro.controller.state import management_networks
from kastro.inventory.loader import PLAN_KEY

ROOT = Path(__file__).resolve().parents[2]
GATEWAYS_GROUP = "gateways"
MONITORING_GROUP = "monitoring_servers"
FIREWALL_GROUPS = ("gateways", "servers", "sensors")  # site.yml's firewall play: kastro-firewall


class GatewayError(ValueError):
    """The inventory does not say how to reach the gateways; the message says what to fix."""


@dataclass
class Gateway:
    name: str
    building: str
    address: str
    user: str = "root"
    port: int = 22
    key: str | None = None
    known_hosts: str | None = None
    strict_host_keys: str = "yes"
    allowlist: list[str] = field(default_factory=list)
    helper: str = "/usr/local/sbin/kastro-firewall"  # installed by the firewall role
    role: str = "gateway"

    def connector_data(self) -> dict[str, Any]:
        """pyinfra's SSH connector settings for this gateway."""
        data: dict[str, Any] = {
            "ssh_hostname": self.address,
            "ssh_user": self.user,
            "ssh_port": self.port,
            "ssh_strict_host_key_checking": self.strict_host_keys,
            "ssh_connect_retries": 1,
        }
        if self.key:
            data["ssh_key"] = self.key
        if self.known_hosts:
            data["ssh_known_hosts_file"] = self.known_hosts
        return data

    def controller_address(self) -> str | None:
        """The address this controller reaches the gateway from (a UDP socket's choice of
        source: nothing is sent), which must never be blocked either."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((self.address, self.port))
                return str(probe.getsockname()[0])
        except OSError:
            return None


def load(inventories: Sequence[str], buildings: Sequence[str] = ()) -> list[Gateway]:
    """Every gateway of the inventory (or of these buildings), sorted by name."""
    hostvars = _ansible_hostvars(inventories, (GATEWAYS_GROUP,))
    if not hostvars:
        raise GatewayError(
            f"no host in group '{GATEWAYS_GROUP}' in {', '.join(inventories)}: run 'kastro apply' "
            "(it writes the groups) or give the inventory Ansible uses with -i"
        )
    gateways = [_gateway(name, variables) for name, variables in sorted(hostvars.items())]
    if buildings:
        unknown = set(buildings) - {g.building for g in gateways}
        if unknown:
            known = ", ".join(sorted({g.building for g in gateways}))
            raise GatewayError(f"--building {', '.join(sorted(unknown))}: not a building ({known})")
        gateways = [g for g in gateways if g.building in buildings]
    return gateways


def monitoring_hosts(inventories: Sequence[str]) -> list[Gateway]:
    """The monitoring hosts (Prometheus with its node_exporter), reached as Ansible does."""
    hostvars = _ansible_hostvars(inventories, (MONITORING_GROUP,))
    if not hostvars:
        raise GatewayError(
            f"no host in group '{MONITORING_GROUP}' in {', '.join(inventories)}: run 'kastro "
            "plan' (kastro_municipality.monitoring_hosts) or give the inventory Ansible uses "
            "with -i"
        )
    return [_connection(name, _plain(v, name)) for name, v in sorted(hostvars.items())]


def group_hosts(inventories: Sequence[str], group: str) -> list[Gateway]:
    """The hosts of an inventory group, reached as Ansible reaches them (none: empty)."""
    hostvars = _ansible_hostvars(inventories, (group,))
    return [_connection(name, _plain(v, name)) for name, v in sorted(hostvars.items())]


@dataclass
class IsolationTarget:
    """What `kastro respond isolate HOST` isolates: the host's planned addresses, and the host
    itself when Kastro manages its firewall (it then enforces the isolation on itself too)."""

    name: str  # the inventory name, or the address of a device Kastro does not manage
    addresses: list[str]
    host: Gateway | None = None


def isolation_target(inventories: Sequence[str], text: str) -> IsolationTarget:
    """An inventory host by name, or any address (a municipal PC, a printer); a host found by
    its address is the same host. Gateways are refused: isolating one cuts its building."""
    hostvars = _ansible_hostvars(inventories, FIREWALL_GROUPS)
    planned = _planned_hosts(hostvars)
    name = text if text in planned else _by_address(planned, text)
    if name is None:
        if ADDRESS.fullmatch(text) and any(mark in text for mark in ".:"):
            return IsolationTarget(text, [text])  # a device Kastro does not manage
        known = ", ".join(sorted(planned)) or "none"
        raise GatewayError(
            f"'{text}' is neither a host of the inventory nor an IP address (hosts: {known})"
        )
    entry = planned[name]
    if entry.get("role") == "gateway":
        raise GatewayError(
            f"{name} is a gateway: isolating it would cut its whole building. Block the "
            "attacking sources instead (kastro respond block), or isolate the hosts behind it"
        )
    addresses = [str(entry[k]) for k in ("ipv4", "ipv6") if entry.get(k)]
    if not addresses:
        raise GatewayError(f"{name} has no planned address: run 'kastro apply' first")
    host = _gateway(name, hostvars[name]) if name in hostvars else None
    if host:
        host.role = str(entry.get("role") or "server")
    return IsolationTarget(name, addresses, host)


def managed_host(inventories: Sequence[str], name: str) -> Gateway | None:
    """A host of the inventory with Kastro's firewall (reconcile re-applies isolations there)."""
    hostvars = _ansible_hostvars(inventories, FIREWALL_GROUPS)
    if name not in hostvars:
        return None
    host = _gateway(name, hostvars[name])
    host.role = str(_planned_hosts(hostvars).get(name, {}).get("role") or "server")
    return host


ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}(?:/[0-9]{1,3})?")  # checked strictly later


def _planned_hosts(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    for variables in hostvars.values():
        plan = with_model(_plain(variables, "?")).get(PLAN_KEY) or {}
        return dict(plan.get("hosts") or {})
    return {}


def _by_address(planned: Mapping[str, Mapping[str, Any]], text: str) -> str | None:
    try:
        wanted = ipaddress.ip_address(text) if ADDRESS.fullmatch(text) else None
    except ValueError:
        return None
    for name, entry in sorted(planned.items()):
        for key in ("ipv4", "ipv6"):
            if wanted and entry.get(key) and ipaddress.ip_address(str(entry[key])) == wanted:
                return name
    return None


# Parsed inventories by (sources, groups), with the sources' modification stamp: one command
# (or one round of a long-running loop) reads an inventory once, and an edited inventory is
# read again (Ansible's inventory parsing is the slow part of every command).
_PARSED: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[float, Any]] = {}


def _stamp(inventories: Sequence[str]) -> float:
    newest = 0.0
    for source in inventories:
        path = Path(source)
        files = path.rglob("*") if path.is_dir() else [path]
        for file in files:
            try:
                newest = max(newest, file.stat().st_mtime)
            except OSError:
                continue
    return newest


def _ansible_hostvars(
    inventories: Sequence[str], groups: Sequence[str]
) -> dict[str, Mapping[str, Any]]:
    key = (tuple(inventories), tuple(groups))
    stamp = _stamp(inventories)
    cached = _PARSED.get(key)
    if cached is not None and cached[0] == stamp:
        return dict(cached[1])
    found = _parse_hostvars(inventories, groups)
    _PARSED[key] = (stamp, found)
    return dict(found)


def _parse_hostvars(
    inventories: Sequence[str], groups: Sequence[str]
) -> dict[str, Mapping[str, Any]]:
    # Kastro's vars plugin (ansible.cfg) gives each host its slice of the model, as for a play.
    os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=list(inventories))
    variables = VariableManager(loader=loader, inventory=inventory)
    members = inventory.get_groups_dict()
    names = sorted({name for group in groups for name in members.get(group, [])})
    return {
        name: variables.get_vars(host=inventory.get_host(name), include_hostvars=False)
        for name in names
    }


def _gateway(name: str, variables: Mapping[str, Any]) -> Gateway:
    plain = _plain(variables, name)
    model = with_model(plain)
    host = _connection(name, plain)
    host.allowlist = [
        *management_networks(model),
        *_addresses(plain, "firewall_management_extra_networks", name),
        *_addresses(plain, "firewall_allowlist", name),
    ]
    return host


def _connection(name: str, plain: Mapping[str, Any]) -> Gateway:
    """How Ansible reaches the host: address, user, port, key, known_hosts."""
    options = _ssh_options(str(plain.get("ansible_ssh_common_args") or ""))
    return Gateway(
        name=name,
        building=str(plain.get("kastro_building") or ""),
        address=str(plain.get("ansible_host") or name),
        user=str(plain.get("ansible_user") or "root"),
        port=int(plain.get("ansible_port") or 22),
        key=plain.get("ansible_ssh_private_key_file"),
        known_hosts=options.get("userknownhostsfile"),
        strict_host_keys=options.get("stricthostkeychecking", "yes"),
    )


def probe_host(inventories: Sequence[str], name: str) -> Gateway:
    """Any host of the inventory, reached as Ansible reaches it, to send a --verify probe
    from (in the lab: the attacker)."""
    hostvars = _ansible_hostvars(inventories, ("all",))
    if name not in hostvars:
        raise GatewayError(f"--verify-from {name}: not a host of {', '.join(inventories)}")
    host = _connection(name, _plain(hostvars[name], name))
    host.role = "probe"
    return host


def _plain(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """Inventory values as plain data; a template cannot be used outside a play."""
    out: dict[str, Any] = {}
    for key, value in variables.items():
        if isinstance(value, str) and "{{" in value and key.startswith(("ansible_", "firewall_")):
            raise GatewayError(
                f"{host}: {key} is a template ({value!r}); kastro respond reads inventory values "
                "as they are: write the value itself"
            )
        out[key] = value
    return out


def _addresses(variables: Mapping[str, Any], key: str, host: str) -> list[str]:
    values = variables.get(key) or []
    if not isinstance(values, list):
        raise GatewayError(f"{host}: {key} must be a list of addresses or networks")
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(str(value), strict=False)))
        except ValueError as exc:
            raise GatewayError(f"{host}: {key} has {value!r}, not an address or network") from exc
    return out


def _ssh_options(common_args: str) -> dict[str, str]:
    """-o Name=value pairs of ansible_ssh_common_args (UserKnownHostsFile and the like)."""
    out = {}
    words = shlex.split(common_args)
    for i, word in enumerate(words):
        text = words[i + 1] if word == "-o" and i + 1 < len(words) else ""
        match = re.fullmatch(r"(\w+)[= ](.+)", text)
        if match:
            out[match.group(1).lower()] = match.group(2)
    return out
