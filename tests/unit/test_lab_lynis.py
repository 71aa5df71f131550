# ruff: noqa: E501  (Lynis log lines as Lynis writes them)
"""Reading Lynis 3.0.8's report and log (the lines its functions write: include/functions)."""

from __future__ import annotations

import pytest

from kastro.lab.lynis import LynisReportError, missed_points, parse_report

REPORT = """# Lynis Report
report_version_major=1
hardening_index=77
lynis_tests_done=248
suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions (10 --> 2)|-|
warning[]=PKGS-7392|Found one or more vulnerable packages.|-|-|
"""
LOG = """2026-12-06 05:40:01 Performing test ID SSH-7408 (Check SSH specific defined options)
2026-12-06 05:40:01 Hardening: assigned partial number of hardening points (1 of 3). Currently having 10 points (out of 14)
2026-12-06 05:40:01 Performing test ID BANN-7126 (Check issue banner file contents)
2026-12-06 05:40:01 Hardening: assigned maximum number of hardening points for this item (2). Currently having 12 points (out of 16)
"""


def test_index_suggestions_and_warnings_are_read() -> None:
    result = parse_report(REPORT)
    assert result.index == 77
    assert result.tests == 248
    assert result.suggestions == ("SSH-7408 Consider hardening SSH configuration",)
    assert result.warnings == ("PKGS-7392 Found one or more vulnerable packages.",)


def test_an_unfinished_report_is_refused() -> None:
    with pytest.raises(LynisReportError):
        parse_report("report_version_major=1\n")


def test_the_tests_that_lost_points_are_named() -> None:
    assert missed_points(LOG) == [("SSH-7408", 1, 3)]
