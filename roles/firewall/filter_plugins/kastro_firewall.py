"""Filters the firewall role uses; the logic lives in kastro.firewall (tested there)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.controller.model_vars import with_model
from kastro.controller.state import host_state
from kastro.firewall.render import render
from kastro.firewall.ruleset import FirewallConfigError, compile_ruleset, management_allows
from kastro.links.config import LinksConfigError


def _compile(variables: dict[str, Any], host: str, settings: dict[str, Any]) -> dict[str, Any]:
    try:
        return compile_ruleset(host, with_model(variables), settings)
    except FirewallConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _state(variables: dict[str, Any], host: str) -> dict[str, Any]:
    try:
        return host_state(with_model(variables), host)
    except LinksConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _allows(settings: dict[str, Any], address: str, interface: str) -> bool:
    try:
        return management_allows(address, interface, settings)
    except FirewallConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_firewall_ruleset": _compile,
            "kastro_firewall_host_state": _state,
            "kastro_firewall_text": render,
            "kastro_firewall_management_allows": _allows,
        }
