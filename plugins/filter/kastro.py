"""Filters every Kastro role may use (ansible.cfg: filter_plugins); each role's own filters
are in its filter_plugins/. The logic lives in the kastro package (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import secrets_dir_filter


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kastro_secrets_dir": secrets_dir_filter}
