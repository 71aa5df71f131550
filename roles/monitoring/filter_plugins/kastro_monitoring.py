"""Filters the monitoring role uses; the logic lives in kastro.monitoring (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.monitoring import deploy
from kastro.monitoring.topology import MonitoringModelError


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_monitoring_files": ansible_filter(deploy.files, MonitoringModelError),
            "kastro_monitoring_arguments": ansible_filter(
                deploy.unit_arguments, MonitoringModelError
            ),
        }
