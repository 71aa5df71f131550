"""Filters the firewall role uses; the logic lives in kastro.firewall (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.controller.state import host_state
from kastro.firewall.render import render
from kastro.firewall.ruleset import FirewallConfigError, compile_ruleset, management_allows
from kastro.links.config import LinksConfigError


def _compile(model: Any, host: str, settings: dict[str, Any]) -> dict[str, Any]:
    return compile_ruleset(host, model, settings)


def _allows(settings: dict[str, Any], address: str, interface: str) -> bool:
    return management_allows(address, interface, settings)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_firewall_ruleset": ansible_filter(_compile, FirewallConfigError),
            "kastro_firewall_host_state": ansible_filter(host_state, LinksConfigError),
            "kastro_firewall_text": render,
            "kastro_firewall_management_allows": ansible_filter(
                _allows, FirewallConfigError, model=False
            ),
        }
