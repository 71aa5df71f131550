"""Filters the telework role uses; the logic lives in kastro.telework (tested there)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.controller.filters import ansible_filter
from kastro.controller.model_vars import with_model
from kastro.telework.access import (
    allowed_ips,
    certificates_to_revoke,
    openvpn_address,
    openvpn_subnets,
    peers,
    people,
)


def _allowed_ips(variables: dict[str, Any], group: str, full_tunnel: bool = False) -> list[str]:
    try:
        return allowed_ips(with_model(variables), group, full_tunnel)
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"teleworker group '{group}': {exc}") from exc


def _peers(variables: dict[str, Any], keys_dir: str) -> list[dict[str, Any]]:
    try:
        return peers(with_model(variables), keys_dir)
    except OSError as exc:
        raise AnsibleFilterError(
            f"a teleworker's public key is missing on the controller: {exc}; run the role "
            "again (it generates missing keys) or restore the keys directory"
        ) from exc


def _to_revoke(issued: list[str], people_ids: list[str], rekey: list[str]) -> list[str]:
    return certificates_to_revoke(list(issued), list(people_ids), list(rekey))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_telework_allowed_ips": _allowed_ips,
            "kastro_telework_people": ansible_filter(people),
            "kastro_telework_peers": _peers,
            "kastro_telework_to_revoke": _to_revoke,
            "kastro_telework_openvpn_address": ansible_filter(
                openvpn_address, KeyError, ValueError
            ),
            "kastro_telework_openvpn_subnets": ansible_filter(openvpn_subnets),
        }
