"""Filters the monitor role uses; the logic lives in kastro.monitoring (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.monitoring.deploy import alertmanager_endpoint
from kastro.monitoring.topology import MonitoringModelError


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_monitor_alertmanager": ansible_filter(
                alertmanager_endpoint, MonitoringModelError
            ),
        }
