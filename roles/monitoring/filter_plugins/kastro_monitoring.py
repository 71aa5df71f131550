"""Filters the monitoring role uses; the logic lives in kastro.monitoring (tested there)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.controller.model_vars import with_model
from kastro.controller.secrets import SecretsDirError, secrets_dir
from kastro.monitoring import deploy
from kastro.monitoring.topology import MonitoringModelError


def _plain(value: Any) -> Any:
    """Ansible's tagged strings and lazy containers as plain Python data (YAML can dump it)."""
    return json.loads(json.dumps(value))


def _checked(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(variables: dict[str, Any], *args: Any) -> Any:
        try:
            return function(with_model(variables), *_plain(list(args)))
        except MonitoringModelError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    return run


def _secrets_dir(municipality: dict[str, Any]) -> str:
    try:
        return secrets_dir(municipality, "monitoring")
    except SecretsDirError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_monitoring_files": _checked(deploy.files),
            "kastro_monitoring_arguments": _checked(deploy.unit_arguments),
            "kastro_monitoring_secrets_dir": _secrets_dir,
        }
