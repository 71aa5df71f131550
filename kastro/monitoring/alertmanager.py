"""Alertmanager's configuration for one municipality: who gets which alert, and what waits.

Routing: every alert goes to the SOC (critical at once, repeated hourly; warnings grouped,
repeated twice a day); an alert of a building with its own contact also goes to that contact.
Grouping by alert name, building and link makes one notification per incident. The topology's
KastroBuildingCutOff alerts only inhibit (receiver without configurations): a cut link is
announced by its KastroLinkDown. Notifications are in Greek first, then English
(templates/kastro.tmpl).

`settings` are the monitoring role's variables (role-prefixed, checked by its argument spec):
smtp_smarthost, smtp_from, soc_email, admin_email, building_contacts, webhook_url.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kastro.inventory.model import check_name
from kastro.monitoring.rules import MonitoringModelError, inhibit_rules

TEMPLATE = Path(__file__).with_name("templates") / "kastro.tmpl"
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$|^\[[0-9A-Fa-f:]+\]:[0-9]{1,5}$")
_URL = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/%-]*)?$")


def _check(name: str, value: str, pattern: re.Pattern[str], example: str) -> str:
    if not pattern.match(value):
        raise MonitoringModelError(f"monitoring_{name} {value!r} is not valid; e.g. {example}")
    return value


def _email(to: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "to": to,
        "from": settings["smtp_from"],
        "smarthost": settings["smtp_smarthost"],
        "require_tls": bool(settings.get("smtp_require_tls", True)),
        "send_resolved": True,
        "headers": {"Subject": '{{ template "kastro.subject" . }}'},
        "text": '{{ template "kastro.text" . }}',
        "html": "",
    }


def _receivers(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    soc: dict[str, Any] = {
        "name": "kastro-soc",
        "email_configs": [_email(settings["soc_email"], settings)],
    }
    if settings.get("webhook_url"):
        url = _check(
            "webhook_url", str(settings["webhook_url"]), _URL, "https://soc.example.gr/hook"
        )
        soc["webhook_configs"] = [{"url": url, "send_resolved": True}]
    receivers = [
        soc,
        {"name": "kastro-admin", "email_configs": [_email(settings["admin_email"], settings)]},
        {"name": "kastro-inhibit-only"},
    ]
    for building, to in sorted((settings.get("building_contacts") or {}).items()):
        receivers.append(
            {"name": f"kastro-building-{building}", "email_configs": [_email(to, settings)]}
        )
    return receivers


def _routes(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {"receiver": "kastro-inhibit-only", "matchers": ['kastro_inhibit="yes"']},
    ]
    for building in sorted(settings.get("building_contacts") or {}):
        routes.append(
            {
                "receiver": f"kastro-building-{building}",
                "matchers": [f'building="{building}"', 'severity=~"critical|warning"'],
                "continue": True,
            }
        )
    routes += [
        {"receiver": "kastro-soc", "matchers": ['severity="critical"'], "group_wait": "10s",
         "repeat_interval": "1h", "continue": True},
        {"receiver": "kastro-admin", "matchers": ['severity=~"critical|warning"'],
         "repeat_interval": "12h"},
    ]  # fmt: skip
    return routes


def check_settings(settings: Mapping[str, Any]) -> None:
    """Every value that goes into the configuration, checked; the error names the variable."""
    for name in ("soc_email", "admin_email", "smtp_from"):
        _check(name, str(settings.get(name, "")), _EMAIL, "soc@kastro.example.gr")
    _check(
        "smtp_smarthost", str(settings.get("smtp_smarthost", "")), _HOSTPORT, "mail.example.gr:587"
    )
    for building, to in (settings.get("building_contacts") or {}).items():
        if check_name(str(building)) is not None:
            raise MonitoringModelError(
                f"monitoring_building_contacts {building!r} is not a building name; "
                "e.g. school: it@school.example.gr"
            )
        _check(f"building_contacts.{building}", str(to), _EMAIL, "it@school.example.gr")


def config(settings: Mapping[str, Any], template_dir: str) -> dict[str, Any]:
    """alertmanager.yml as data; `template_dir` is where kastro.tmpl is installed."""
    check_settings(settings)
    return {
        "route": {
            "receiver": "kastro-soc",
            "group_by": ["alertname", "building", "link"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": _routes(settings),
        },
        "receivers": _receivers(settings),
        "inhibit_rules": inhibit_rules(),
        "templates": [f"{template_dir}/*.tmpl"],
    }
