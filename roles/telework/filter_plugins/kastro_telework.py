"""Filters the telework role uses; the logic lives in kastro.telework (tested there)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.telework.access import allowed_ips


def _allowed_ips(variables: dict[str, Any], group: str, full_tunnel: bool = False) -> list[str]:
    try:
        return allowed_ips(variables, group, full_tunnel)
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"teleworker group '{group}': {exc}") from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kastro_telework_allowed_ips": _allowed_ips}
