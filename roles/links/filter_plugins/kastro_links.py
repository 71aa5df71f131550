"""Filters the links role uses; the logic lives in kastro.links (tested there)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.controller.model_vars import key_names, with_model
from kastro.controller.secrets import SecretsDirError, secrets_dir
from kastro.controller.state import links_state
from kastro.links.config import LinksConfigError, gateway_config
from kastro.links.wireguard import WireguardKeyError, tunnel_files


def _config(variables: dict[str, Any], host: str, settings: dict[str, Any]) -> dict[str, Any]:
    try:
        return gateway_config(host, with_model(variables), settings)
    except LinksConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _state(variables: dict[str, Any], host: str) -> dict[str, Any]:
    try:
        return links_state(with_model(variables), host)
    except LinksConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _secrets_dir(municipality: dict[str, Any], part: str) -> str:
    try:
        return secrets_dir(municipality, part)
    except SecretsDirError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _tunnel_files(config: dict[str, Any], host: str, secrets: str) -> list[dict[str, str]]:
    try:
        return tunnel_files(config["links"], host, secrets)
    except WireguardKeyError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_links_config": _config,
            "kastro_links_state": _state,
            "kastro_links_key_names": key_names,
            "kastro_secrets_dir": _secrets_dir,
            "kastro_links_tunnel_files": _tunnel_files,
        }
