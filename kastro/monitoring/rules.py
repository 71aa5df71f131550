"""The alert rules and Alertmanager inhibitions of one municipality, from the model and plan.

The fixed rules live in rules.yml beside this file (tested by tests/promtool/kastro.test.yml);
the rules that depend on the topology are generated here: KastroBuildingCutOff per building
that broken links can cut off, and the inhibition that holds back the alerts of the hosts and
services behind a broken link, so that a cut link is one notification, not thirty.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kastro.monitoring import topology
from kastro.monitoring.topology import MonitoringModelError

__all__ = ["MonitoringModelError", "inhibit_rules", "static_rules", "topology_rules"]

STATIC_RULES = Path(__file__).with_name("rules.yml")
# The alerts that a building's being cut off explains.
CONSEQUENCES = ("KastroHostDown", "KastroExporterDown", "KastroServiceDown", "KastroProbeFailed")
# The alerts that a link's being down explains (on the link's own label).
LINK_CONSEQUENCES = ("KastroOspfAdjacencyLost", "KastroLinkDegraded", "KastroProbeFailed")


def topology_rules(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The generated rule file: one group, kastro-topology (names checked where spliced)."""
    generated = topology.cut_off_rules(variables) + topology.failover_rules(variables)
    return {"groups": [{"name": "kastro-topology", "rules": generated}]}


def static_rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(STATIC_RULES.read_text(encoding="utf-8"))
    return data


def inhibit_rules() -> list[dict[str, Any]]:
    """Alertmanager inhibitions: a cut-off building's host and service alerts wait, and so do
    a down link's own symptoms."""
    return [
        {
            "source_matchers": ['alertname="KastroBuildingCutOff"'],
            "target_matchers": [f'alertname=~"{"|".join(CONSEQUENCES)}"'],
            "equal": ["building"],
        },
        {
            # A link that is down explains its own symptoms on either end: lost OSPF
            # neighbours, loss and delay, an end that no longer answers pings.
            "source_matchers": ['alertname=~"KastroLinkDown|KastroLinkFailover"'],
            "target_matchers": [f'alertname=~"{"|".join(LINK_CONSEQUENCES)}"'],
            "equal": ["link"],
        },
        {
            # A ring link that failed over is one warning, not a critical page as well.
            "source_matchers": ['alertname="KastroLinkFailover"'],
            "target_matchers": ['alertname="KastroLinkDown"'],
            "equal": ["link"],
        },
        {
            # A critical alert of a host holds back its warnings (one page per incident).
            # Only alerts that name a host: Alertmanager counts two missing labels as equal,
            # so a link's critical alert would otherwise hold back every hostless warning.
            "source_matchers": ['severity="critical"', 'host=~".+"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["host"],
        },
    ]


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
