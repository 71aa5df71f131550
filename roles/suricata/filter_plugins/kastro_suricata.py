"""Filters the suricata role uses; the logic lives in kastro.suricata (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.controller.filters import ansible_filter
from kastro.suricata.config import SuricataModelError, variables
from kastro.suricata.ruleset import RulesetError, threshold_lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_suricata_vars": ansible_filter(variables, SuricataModelError),
            "kastro_suricata_thresholds": ansible_filter(
                threshold_lines,
                RulesetError,
                model=False,
                prefix="Τίποτα δεν άλλαξε / Nothing was changed: ",
            ),
        }
