"""Filters the endpoint role uses; the logic lives in kastro.endpoint (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.endpoint.audit import audit_rules
from kastro.endpoint.profile import EndpointConfigError, sysctl_drift
from kastro.endpoint.state import endpoint_state


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_endpoint_state": ansible_filter(endpoint_state, EndpointConfigError),
            "kastro_endpoint_audit_rules": ansible_filter(audit_rules, EndpointConfigError),
            "kastro_endpoint_sysctl_drift": ansible_filter(
                sysctl_drift, EndpointConfigError, model=False
            ),
        }
