"""Filters the monitor role uses; the logic lives in kastro.monitoring (tested there)."""

from __future__ import annotations

import json
from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.controller.model_vars import with_model
from kastro.controller.secrets import SecretsDirError, secrets_dir
from kastro.monitoring.deploy import alertmanager_endpoint
from kastro.monitoring.topology import MonitoringModelError


def _endpoint(variables: dict[str, Any], host: str) -> dict[str, Any]:
    try:
        return alertmanager_endpoint(with_model(variables), json.loads(json.dumps(host)))
    except MonitoringModelError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _secrets_dir(municipality: dict[str, Any]) -> str:
    """The monitoring secrets directory; empty for a host without the model (a sensor alone,
    as in molecule/monitor), which forwards nothing."""
    if not (municipality or {}).get("domain"):
        return ""
    try:
        return secrets_dir(municipality, "monitoring")
    except SecretsDirError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_monitor_alertmanager": _endpoint,
            "kastro_monitor_secrets_dir": _secrets_dir,
        }
