"""Filters the links role uses; the logic lives in kastro.links (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.controller.model_vars import key_names
from kastro.controller.state import links_state
from kastro.links.config import LinksConfigError, gateway_config, port_link_files
from kastro.links.wireguard import WireguardKeyError, tunnel_files


def _config(model: Any, host: str, settings: dict[str, Any]) -> dict[str, Any]:
    return gateway_config(host, model, settings)


def _tunnel_files(config: dict[str, Any], host: str, secrets: str) -> list[dict[str, str]]:
    return tunnel_files(config["links"], host, secrets)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_links_config": ansible_filter(_config, LinksConfigError),
            "kastro_links_state": ansible_filter(links_state, LinksConfigError),
            "kastro_links_key_names": key_names,
            "kastro_links_port_files": ansible_filter(port_link_files, model=False),
            "kastro_links_tunnel_files": ansible_filter(
                _tunnel_files, WireguardKeyError, model=False
            ),
        }
