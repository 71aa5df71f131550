"""The asset register's fields (NIS2, law 5160/2024 article 21(2)(i)): who owns an asset, how
critical it is, which legal entity it belongs to, where it is, what it is; and the devices
Kastro lists but never configures (Windows PCs, PLCs, cameras, printers).

The fields are plain one-line texts or fixed choices, checked like every other field of the
model; they never reach a host's configuration, only the register, its exports and incident
reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kastro.i18n import t

CRITICALITY = ("low", "medium", "high", "critical")
DEVICE_KINDS = ("pc", "laptop", "printer", "plc", "hmi", "camera", "phone", "access-point",
                "switch", "nas", "other")  # fmt: skip
# One line, no markup: these texts end up in HTML reports and CSV files opened by spreadsheets.
TEXT = re.compile(r"[^\x00-\x1f\x7f<>]{1,200}")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@")
TEXT_FIELDS = ("owner", "location", "vendor", "model", "os", "supplier", "contract")


def text_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not TEXT.fullmatch(value):
        return t("is not a one-line text of at most 200 characters without < or >")
    if value.startswith(FORMULA_START):
        return t("starts with = + - or @ (a spreadsheet would run it as a formula)")
    return None


def mac_problem(value: Any) -> str | None:
    if isinstance(value, str) and MAC.fullmatch(value.lower()):
        return None
    return t("'{value}' is not a MAC address", value=value)


def choice_problem(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return (
            None
            if value in choices
            else t("'{value}' is not one of {choices}", value=value, choices=", ".join(choices))
        )

    return check


# field -> (check, fix); the model's tables add these to hosts, devices, buildings and links.
EXAMPLES = {
    "owner": "Τμήμα Πληροφορικής", "location": "Πλατεία Δημαρχείου 1, 2ος όροφος",
    "vendor": "Dell", "model": "PowerEdge R350", "os": "Debian 12",
    "supplier": "Example Telecom ΑΕ", "contract": "ΣΥΜΒ-2024-117",
}  # fmt: skip
CHECKS: dict[str, tuple[Callable[[Any], str | None], str]] = {
    **{
        name: (
            text_problem,
            t(
                "write plain text on one line, e.g. {name}: {example}",
                name=name,
                example=EXAMPLES[name],
            ),
        )
        for name in TEXT_FIELDS
    },
    "criticality": (
        choice_problem(CRITICALITY),
        t("set criticality to one of: {criticality}", criticality=", ".join(CRITICALITY)),
    ),
    "legal_entity": (
        lambda v: (
            None
            if isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9-]{0,31}", v)
            else t("'{v}' is not an entity name", v=v)
        ),
        t("name an entity of kastro_nis2.entities, e.g. legal_entity: deya"),
    ),
    "mac": (mac_problem, t("write the MAC address as 00:11:22:33:44:55")),
}
HOST_REGISTER = ("owner", "criticality", "legal_entity", "location", "vendor", "model", "os",
                 "mac")  # fmt: skip
LINK_REGISTER = ("supplier", "contract")
BUILDING_REGISTER = ("owner", "legal_entity", "location")


@dataclass(frozen=True)
class Device:
    """Documented, not managed: in the register and its reconciliation, never in Ansible."""

    name: str
    building: str
    zone: str
    kind: str
    description: str
    services: tuple[str, ...]
    register: tuple[tuple[str, str], ...]
    fixed_address: bool = False  # the plan gives it an address (a policy rule may name it)


def fields(register: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(register)


def read(got: Mapping[str, Any], names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The register fields given (already checked by the table), in a fixed order."""
    return tuple((name, str(got[name])) for name in names if got.get(name))
