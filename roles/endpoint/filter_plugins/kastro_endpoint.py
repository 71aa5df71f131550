"""Filters the endpoint role uses; the logic lives in kastro.endpoint (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.endpoint.profile import EndpointConfigError, endpoint_state


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kastro_endpoint_state": ansible_filter(endpoint_state, EndpointConfigError)}
