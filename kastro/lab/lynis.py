"""Lynis results: the hardening index and what Lynis still suggests, from its report file.

Lynis (Debian's 3.0.8) writes `key=value` lines to its report (`--report-file`); the index is
`hardening_index=NN`, each open point a `suggestion[]=ID|text|detail|solution|` or
`warning[]=...` line. The measuring side only: the role never runs Lynis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMAND = (
    "lynis", "audit", "system", "--quick", "--no-colors",
    "--log-file", "/root/lynis.log", "--report-file", "/root/lynis-report.dat",
)  # fmt: skip
REPORT = "/root/lynis-report.dat"
LOG = "/root/lynis.log"
TEST = re.compile(r"Performing test ID (\S+)")
POINTS = re.compile(r"Hardening: assigned partial number of hardening points \((\d+) of (\d+)\)")


class LynisReportError(ValueError):
    """The report is not a finished Lynis report (no hardening index)."""


@dataclass(frozen=True)
class Result:
    index: int
    tests: int
    suggestions: tuple[str, ...]  # "ID text"
    warnings: tuple[str, ...]


def parse_report(text: str) -> Result:
    values: dict[str, str] = {}
    suggestions: list[str] = []
    warnings: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("suggestion[]", "warning[]"):
            fields = value.split("|")
            item = f"{fields[0]} {fields[1] if len(fields) > 1 else ''}".strip()
            (suggestions if key == "suggestion[]" else warnings).append(item)
        else:
            values[key] = value
    index = values.get("hardening_index", "")
    if not index.isdigit():
        raise LynisReportError("no hardening_index in the report: did Lynis finish?")
    tests = values.get("lynis_tests_done", "0")
    return Result(int(index), int(tests) if tests.isdigit() else 0,
                  tuple(suggestions), tuple(warnings))  # fmt: skip


def missed_points(log: str) -> list[tuple[str, int, int]]:
    """(test, points given, points possible) of every test that gave less than it could: where
    the index is lost, from Lynis's own log."""
    missed, test = [], ""
    for line in log.splitlines():
        started = TEST.search(line)
        if started:
            test = started.group(1)
        points = POINTS.search(line)
        if points and int(points.group(1)) < int(points.group(2)):
            missed.append((test, int(points.group(1)), int(points.group(2))))
    return missed
