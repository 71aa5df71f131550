"""Everything the endpoint role writes on one host, compiled on the controller from the plan
and the host's variables (each part checked in its own module)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.endpoint.accounts import accounts_state
from kastro.endpoint.integrity import integrity_state
from kastro.endpoint.profile import kernel_state


def endpoint_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    return {
        **kernel_state(variables, host),
        "accounts": accounts_state(variables),
        "integrity": integrity_state(variables),
    }
