"""Everything the endpoint role writes on one host, compiled on the controller from the plan
and the host's variables (each part checked in its own module)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kastro.endpoint.accounts import accounts_state
from kastro.endpoint.antivirus import antivirus_state
from kastro.endpoint.audit import safe_path
from kastro.endpoint.integrity import integrity_state
from kastro.endpoint.mounts import mount_options
from kastro.endpoint.profile import EndpointConfigError, kernel_state

METRICS_DIR = "/var/lib/prometheus/node-exporter"  # node_exporter's textfile directory
# systemd OnCalendar expressions: weekdays, dates, times, ranges and lists, on one line.
CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,64}")
SCHEDULES = {
    "endpoint_aide_check_time": "*-*-* 03:30:00",
    "endpoint_clamav_scan_time": "*-*-* 02:00:00",
}


def schedules(variables: Mapping[str, Any]) -> dict[str, str]:
    found = {}
    for name, default in SCHEDULES.items():
        value = variables.get(name, default)
        if not isinstance(value, str) or not CALENDAR.fullmatch(value):
            raise EndpointConfigError(
                f"{name}: {value!r} is not a systemd calendar time on one line, e.g. {default!r} "
                "or 'Sat *-*-* 01:00:00' (letters, digits and * : , . / ~ - only)"
            )
        found[name.removeprefix("endpoint_")] = value
    return found


def metrics_dir(variables: Mapping[str, Any]) -> str:
    value = variables.get("endpoint_metrics_dir", METRICS_DIR)
    if not safe_path(value) or value.count("/") < 2:
        raise EndpointConfigError(
            f"endpoint_metrics_dir: {value!r} is not node_exporter's textfile directory as an "
            f"absolute path of letters, digits and . _ - / (e.g. {METRICS_DIR})"
        )
    return str(value)


def endpoint_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    return {
        **kernel_state(variables, host),
        "accounts": accounts_state(variables),
        "integrity": integrity_state(variables),
        "antivirus": antivirus_state(variables),
        "mounts": mount_options(variables),
        "metrics_dir": metrics_dir(variables),
        "schedules": schedules(variables),
    }
