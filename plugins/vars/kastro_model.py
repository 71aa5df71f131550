"""Vars plugin: group_vars and host_vars as Ansible's host_group_vars loads them, except the
Kastro model, which each host gets as its own slice (kastro_host) instead of a whole copy.

Enabled in ansible.cfg (and by the Makefile's environment, for Molecule) in place of
host_group_vars. The logic is in kastro.controller.model_vars (unit-tested there).
"""

from __future__ import annotations

import os
from typing import Any

from ansible.inventory.group import InventoryObjectType
from ansible.plugins.vars.host_group_vars import VarsModule as HostGroupVars
from ansible.utils.path import basedir

from kastro.controller.model_vars import MODEL_VARIABLES, cached_host_slice, model_directory

DOCUMENTATION = """
    name: kastro_model
    short_description: group_vars and host_vars, with the Kastro model sliced per host
    requirements:
        - Enabled in configuration (vars_plugins_enabled = kastro_model)
    description:
        - Loads group_vars/ and host_vars/ like host_group_vars.
        - Leaves the Kastro model and plan (kastro_municipality, kastro_buildings, kastro_links,
          kastro_services, kastro_policy, kastro_teleworker_groups, kastro_teleworkers,
          kastro_plan) out of every host's variables.
        - Gives each host of an inventory with a model the variable kastro_host, its own slice.
        - Gives a gateway whose ports the model describes kastro_interfaces and kastro_netdevs
          derived from them, unless an inventory source sets kastro_interfaces itself.
    options:
      stage:
        ini:
          - key: stage
            section: vars_kastro_model
        env:
          - name: ANSIBLE_VARS_PLUGIN_STAGE
      _valid_extensions:
        default: [".yml", ".yaml", ".json"]
        description:
          - Extensions of the files that hold variables.
        env:
          - name: ANSIBLE_YAML_FILENAME_EXT
        ini:
          - key: yaml_valid_extensions
            section: defaults
        type: list
        elements: string
    extends_documentation_fragment:
      - vars_plugin_staging
"""


class VarsModule(HostGroupVars):
    REQUIRES_ENABLED = True
    is_stateless = True

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        data = super().get_vars(loader, path, entities, cache)
        data = {key: value for key, value in data.items() if key not in MODEL_VARIABLES}
        hosts = [
            e
            for e in (entities if isinstance(entities, list) else [entities])
            if e.base_type is InventoryObjectType.HOST
        ]
        inventory = model_directory(os.path.realpath(basedir(path))) if hosts else None
        if inventory is None:
            return data
        for host in hosts:
            mine = cached_host_slice(inventory, host.name)
            if mine is None:
                continue
            data["kastro_host"] = mine
            # A gateway described by ports gets its interfaces from them, unless an inventory
            # source names them itself (the container lab: one veth per zone, no VLANs).
            if "interfaces" in mine and "kastro_interfaces" not in host.vars:
                data["kastro_interfaces"] = mine["interfaces"]
                data["kastro_netdevs"] = mine["netdevs"]
        return data
