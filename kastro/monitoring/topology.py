"""Which buildings a set of broken links cuts off from the monitoring host, from the plan.

When the radio link to the school is down, every host and service at the school stops
answering too: one incident, not thirty. Alertmanager inhibits the consequences when it knows
which buildings are behind which links. That follows from the plan's links, so it is computed
here and stays right when buildings and links are added.

For each building the minimal sets of links whose loss together cuts it off from the
monitoring building (a spur: its one link; a ring: two links) become one alert rule,
KastroBuildingCutOff{building=...}, that inhibits the building's host and service alerts.

A link whose loss alone cuts nobody off (one in a ring) gets KastroLinkFailover{link=...}:
while it is down and every building is still reachable, traffic has failed over to the other
way round, and that one warning stands for the incident (it holds back KastroLinkDown). When
a second break cuts a building off, the failover alert ends and KastroLinkDown pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

from kastro.inventory.model import check_name


class MonitoringModelError(ValueError):
    """A name that may not be spliced into a rule (the model should have refused it)."""


def checked_name(kind: str, name: str) -> str:
    """`name` when it follows the model's naming rule (it goes into PromQL and templates)."""
    if check_name(name) is not None:
        raise MonitoringModelError(
            f"{kind} name {name!r} may not go into an alert rule: lower-case letters, digits "
            "and '-' only (kastro validate checks this; run it)"
        )
    return name


def graph(plan: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Link name -> its two end buildings; every name checked, as it will reach PromQL."""
    links = {}
    for name, link in (plan.get("links") or {}).items():
        ends = sorted((link.get("ends") or {}).keys())
        if len(ends) == 2:
            links[checked_name("link", str(name))] = (str(ends[0]), str(ends[1]))
    return links


def reachable(start: str, links: Mapping[str, tuple[str, str]], broken: Iterable[str]) -> set[str]:
    """Buildings reachable from `start` over the links not in `broken`."""
    down = set(broken)
    neighbours: dict[str, set[str]] = {}
    for name, (a, b) in links.items():
        if name not in down:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    seen = {start}
    todo = [start]
    while todo:
        for nxt in neighbours.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def max_cut_size(link_count: int) -> int:
    """How many simultaneous link failures are considered: the number of subsets grows as
    links^size, so large towns look at fewer (documented in docs/monitoring.md)."""
    if link_count <= 30:
        return 3
    return 2 if link_count <= 120 else 1


def cut_sets(plan: Mapping[str, Any], home: str) -> dict[str, list[tuple[str, ...]]]:
    """Building -> the minimal sets of links whose loss cuts it off from `home`, smallest
    first. A building `home` cannot reach even with every link up is not listed."""
    links = graph(plan)
    connected = reachable(home, links, ())
    found: dict[str, list[tuple[str, ...]]] = {}
    for size in range(1, max_cut_size(len(links)) + 1):
        for broken in combinations(sorted(links), size):
            for building in connected - reachable(home, links, broken):
                known = found.setdefault(building, [])
                if not any(set(smaller) <= set(broken) for smaller in known):
                    known.append(broken)
    return {b: found[b] for b in sorted(found)}


def home_building(variables: Mapping[str, Any]) -> str:
    """The building of the first monitoring host; the city hall when none is named."""
    plan = variables.get("kastro_plan") or {}
    hosts = plan.get("hosts") or {}
    names = (variables.get("kastro_municipality") or {}).get("monitoring_hosts") or []
    for name in names:
        if name in hosts:
            return str(hosts[name]["building"])
    for name, building in sorted((variables.get("kastro_buildings") or {}).items()):
        if (building or {}).get("city_hall"):
            return str(name)
    return ""


def _link_down(link: str) -> str:
    # Both ends report the link; it is down when no end sees it up (max over what answers).
    return f'max(kastro_link_up{{link="{link}"}}) < 1'


def cut_off_expression(sets: list[tuple[str, ...]]) -> str:
    """PromQL that has a value while any of the cut sets is wholly down."""
    alternatives = [" and ".join(f"({_link_down(link)})" for link in broken) for broken in sets]
    return " or ".join(f"({alt})" if len(sets) > 1 else alt for alt in alternatives)


def cut_off_rules(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One KastroBuildingCutOff alert rule per building that broken links can cut off."""
    plan = variables.get("kastro_plan") or {}
    home = home_building(variables)
    rules = []
    for building, sets in cut_sets(plan, home).items():
        checked_name("building", building)
        shown = ", ".join(" + ".join(s) for s in sets)
        rules.append(
            {
                "alert": "KastroBuildingCutOff",
                "expr": cut_off_expression(sets),
                "labels": {"severity": "info", "building": building, "kastro_inhibit": "yes"},
                "annotations": {
                    "summary_el": f"Το κτίριο {building} δεν είναι προσβάσιμο από το {home}: "
                    "οι ειδοποιήσεις για τους υπολογιστές και τις υπηρεσίες του αναστέλλονται.",
                    "summary_en": f"Building {building} is cut off from {home}: alerts for its "
                    "hosts and services are held back.",
                    "description": f"Links whose loss cuts it off: {shown}.",
                    "runbook": "docs/monitoring.md#kastrobuildingcutoff",
                },
            }
        )
    return rules


def failover_rules(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One KastroLinkFailover alert rule per link that can fail without cutting anyone off."""
    plan = variables.get("kastro_plan") or {}
    home = home_building(variables)
    links = graph(plan)
    sets = cut_sets(plan, home)
    connected = reachable(home, links, ())
    rules = []
    for link, (a, b) in sorted(links.items()):
        if not {a, b} <= connected or connected - reachable(home, links, [link]):
            continue  # a spur (its loss cuts a building off) or a link the home cannot reach
        with_it = sorted({s for found in sets.values() for s in found if link in s})
        expr = _link_down(link)
        if with_it:
            expr = f"({expr}) unless on() ({cut_off_expression(with_it)})"
        rules.append(
            {
                "alert": "KastroLinkFailover",
                "expr": expr,
                "for": "30s",
                "labels": {"severity": "warning", "link": link},
                "annotations": {
                    "summary_el": f"Η ζεύξη {link} ({a}–{b}) είναι εκτός λειτουργίας και η κίνηση "
                    "πήγε από την άλλη διαδρομή: όλα τα κτίρια είναι προσβάσιμα, χωρίς εφεδρεία.",
                    "summary_en": f"Link {link} ({a}-{b}) is down and traffic failed over to the "
                    "other path: every building is reachable, with no spare path left.",
                    "runbook": "docs/monitoring.md#kastrolinkfailover",
                },
            }
        )
    return rules
