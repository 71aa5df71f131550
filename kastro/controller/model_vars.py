"""The model on the controller, and each host's own slice of it.

The admin's model and the plan live in ``INVENTORY/group_vars/all``. Ansible would copy every
variable there into every host, so a 300-building municipality would carry 330 copies of the
whole model and plan (`ansible-inventory --list`: 123 s and 4.3 GB). Instead the `kastro_model`
vars plugin (plugins/vars/kastro_model.py) keeps those variables out of the hosts and gives
each host one variable, ``kastro_host``, built here: its entries of the plan, the zones it has
addresses in, the municipality's settings, and the inventory directory. Filters that compile
from the whole model (rulesets, link configs, peers) read it on the controller with
`with_model`, from the same files, through a cache that forked Ansible workers inherit.

The files are read as data: a value in the model is never templated by Ansible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kastro.inventory.loader import MODEL_KEYS, PLAN_KEY, UnreadableFileError, load_bounded
from kastro.inventory.plan import management_address, runs_vpn
from kastro.inventory.ports import interfaces, netdevs, raw_ports

MODEL_VARIABLES = frozenset((*MODEL_KEYS, PLAN_KEY))

_Signature = tuple[tuple[str, int, int], ...]
_MODELS: dict[str, tuple[_Signature, dict[str, Any]]] = {}
_SLICES: dict[tuple[str, str], tuple[_Signature, dict[str, Any]]] = {}


def model_directory(base: str | Path) -> Path | None:
    """The inventory directory whose group_vars/all holds a model, for an inventory source's
    directory `base` (a linked group_vars, as Molecule makes, is followed). None without one."""
    group_vars = Path(base) / "group_vars"
    if not (group_vars / "all").is_dir():
        return None
    return Path(os.path.realpath(group_vars)).parent


def _files(inventory: Path) -> list[Path]:
    directory = inventory / "group_vars" / "all"
    return sorted(p for p in [*directory.glob("*.yml"), *directory.glob("*.yaml")] if p.is_file())


def _signature(files: list[Path]) -> _Signature:
    stats = [(str(p), p.stat()) for p in files]
    return tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats)


def _read(files: list[Path]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path in files:
        try:
            loaded = load_bounded(path)
        except UnreadableFileError:
            continue  # 'kastro validate', the first play, names the file and the fix
        if isinstance(loaded, dict):
            data.update({k: v for k, v in loaded.items() if k in MODEL_VARIABLES})
    return data


def model_variables(inventory: str | Path) -> dict[str, Any]:
    """The model's and the plan's variables of an inventory directory, read once per change
    of its files. Callers must not modify the result."""
    path = Path(inventory)
    files = _files(path)
    signature = _signature(files)
    cached = _MODELS.get(str(path))
    if cached is None or cached[0] != signature:
        cached = (signature, _read(files))
        _MODELS[str(path)] = cached
    return cached[1]


def _zones_of(zones: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The zones a host has an address in: a gateway's interfaces, another host's zone."""
    wanted = {f"{entry.get('building')}.{kind}" for kind in entry.get("interfaces") or {}}
    if entry.get("zone"):
        wanted.add(str(entry["zone"]))
    return {key: zone for key, zone in zones.items() if key in wanted}


def _plan_slice(plan: Mapping[str, Any], host: str, vpn: bool) -> dict[str, Any]:
    entry = (plan.get("hosts") or {}).get(host)
    router = (plan.get("router_ids") or {}).get(host)
    links = {
        name: link
        for name, link in (plan.get("links") or {}).items()
        if any(end.get("gateway") == host for end in (link.get("ends") or {}).values())
    }
    return {
        "hosts": {host: entry} if entry is not None else {},
        "router_ids": {host: router} if router is not None else {},
        "zones": _zones_of(plan.get("zones") or {}, entry or {}),
        "links": links,
        "vpn_pools": (plan.get("vpn_pools") or {}) if vpn else {},
        "teleworkers": (plan.get("teleworkers") or {}) if vpn else {},
    }


def host_slice(model: Mapping[str, Any], host: str, inventory: str | Path) -> dict[str, Any]:
    """What `host` needs of the model in its own variables (``kastro_host``)."""
    plan = model.get(PLAN_KEY) or {}
    planned = (plan.get("hosts") or {}).get(host) or {}
    building = (model.get("kastro_buildings") or {}).get(str(planned.get("building"))) or {}
    vpn = runs_vpn(
        str(planned.get("role")),
        bool(building.get("city_hall")),
        len(model.get("kastro_teleworker_groups") or {}),
    )
    teleworkers = (model.get("kastro_teleworkers") or []) if vpn else []
    nics = raw_ports(model.get("kastro_ports"), host)
    return {
        "inventory": str(inventory),
        "municipality": model.get("kastro_municipality") or {},
        "plan": _plan_slice(plan, host, vpn),
        "management_address": management_address(plan, host),
        "vpn_server": vpn,
        "teleworker_ids": [str(p.get("id")) for p in teleworkers if isinstance(p, dict)],
        # A gateway described by its ports: its interfaces and the VLANs and bonds to create
        # (the vars plugin turns them into kastro_interfaces and kastro_netdevs).
        **({"interfaces": interfaces(nics), "netdevs": netdevs(nics)} if nics else {}),
    }


def cached_host_slice(inventory: Path, host: str) -> dict[str, Any] | None:
    """`host_slice` of an inventory directory's model, recomputed only when its files
    change (Ansible asks for a host's variables at every task). None without a model."""
    files = _files(inventory)
    if not files:
        return None
    signature = _signature(files)
    key = (str(inventory), host)
    cached = _SLICES.get(key)
    if cached is None or cached[0] != signature:
        model = model_variables(inventory)
        if not model:
            return None
        cached = (signature, host_slice(model, host, inventory))
        _SLICES[key] = cached
    return cached[1]


def with_model(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    """A host's variables with the whole model and plan added back, for the compilers that
    need them (a ruleset names every zone). Variables that already hold the model (unit tests,
    a run without the vars plugin) are returned as they are."""
    if PLAN_KEY in variables:
        return variables
    inventory = (variables.get("kastro_host") or {}).get("inventory")
    if not inventory:
        return variables
    return {**model_variables(inventory), **variables}


def key_names(inventory: str | Path) -> dict[str, list[str]]:
    """Every gateway with a router id and every link: the names the controller keeps keys for."""
    plan = model_variables(inventory).get(PLAN_KEY) or {}
    return {
        "routers": sorted(plan.get("router_ids") or {}),
        "links": sorted(plan.get("links") or {}),
    }
