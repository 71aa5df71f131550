"""Time-based rules (issue #25: guest Wi-Fi only in opening hours): the schedule is checked
strictly, rendered as nftables' meta day/hour, and a window is proven against the real kernel
clock in a private network namespace: inside it a packet is counted, outside it is not, with
the window given in local time as the hosts' timezone has it."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import zoneinfo
from pathlib import Path

import pytest

from kastro.cli import main
from kastro.firewall.ruleset import compile_ruleset, schedule_match
from kastro.host import firewall as helper
from kastro.inventory.model import Schedule, parse_schedule
from kastro.inventory.project import describe_policy, validate_inventory
from tests.inventory_helpers import EXAMPLE
from tests.unit.test_firewall_ruleset import hosts_and_vars, render, settings

needs_nft = pytest.mark.skipif(
    not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare"
)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ({"hours": "08:00-20:00"}, "08:00-20:00"),
        ({"days": "mon-fri", "hours": "08:00-20:00"}, "mon-fri 08:00-20:00"),
        ({"days": ["sat", "mon-wed"], "hours": "09:00-13:30"}, "mon-wed, sat 09:00-13:30"),
        ({"days": ["mon-sun"], "hours": "22:00-06:00"}, "22:00-06:00"),  # every day: no days
    ],
)
def test_a_schedule_is_read_in_week_order(raw, said):
    schedule, problem, _ = parse_schedule(raw)
    assert not problem and str(schedule) == said


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("08:00-20:00", "must be a mapping"),
        ({"days": "mon-fri"}, "must be a mapping"),
        ({"hours": "08:00-20:00", "timezone": "UTC"}, "must be a mapping"),
        ({"hours": "8-20"}, "is not a window"),
        ({"hours": "08:00-08:00"}, "is not a window"),
        ({"hours": "24:00-01:00"}, "is not a window"),
        ({"hours": '08:00-20:00" accept'}, "is not a window"),
        ({"days": "fri-mon", "hours": "08:00-20:00"}, "are not days"),
        ({"days": ["Monday"], "hours": "08:00-20:00"}, "are not days"),
        ({"days": [], "hours": "08:00-20:00"}, "are not days"),
        ({"days": "mon-fri", "hours": "22:00-02:00"}, "the kernel counts days in UTC"),
        ({"days": "sat", "hours": "01:00-05:00"}, "the kernel counts days in UTC"),
    ],
)
def test_a_bad_schedule_names_what_is_wrong(raw, problem):
    schedule, said, fix = parse_schedule(raw)
    assert schedule is None and problem in said and fix


def test_the_match_is_built_from_checked_names_only():
    assert schedule_match(None) == ""
    assert schedule_match(Schedule((), "08:00", "20:00")) == 'meta hour "08:00"-"20:00" '
    assert schedule_match(Schedule(("mon", "fri"), "08:00", "20:00")) == (
        'meta day { "Monday", "Friday" } meta hour "08:00"-"20:00" '
    )


def test_a_scheduled_rule_is_validated_reported_and_compiled(tmp_path: Path, capsys):
    inventory = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inventory)
    policy = inventory / "group_vars/all/policy.yml"
    text = policy.read_text(encoding="utf-8")
    old = "  - from: guest\n    to: internet\n"
    assert text.count(old) == 1
    policy.write_text(
        text.replace(old, old + "    schedule: {days: mon-sat, hours: '08:00-21:00'}\n"), "utf-8"
    )
    planned = validate_inventory(inventory)
    said = [line for line in describe_policy(planned.model) if "guest" in line]
    assert "(only mon-sat 08:00-21:00)" in said[0]
    ruleset = render(
        compile_ruleset("library-gw", dict(hosts_and_vars(inventory))["library-gw"], settings())
    )
    days = '"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"'
    assert f'meta day {{ {days} }} meta hour "08:00"-"21:00" tcp dport' in ruleset
    # A schedule nothing can express is refused before any host changes.
    policy.write_text(
        text_of(policy).replace("hours: '08:00-21:00'", "hours: '21:00-08:00'"), "utf-8"
    )
    assert main(["validate", "-i", str(inventory)]) == 1
    assert "the kernel counts days in UTC" in capsys.readouterr().err


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _window(now: datetime.datetime, inside: bool) -> str:
    """A two-hour window of local time around now, or one that ended an hour ago."""
    start = now - datetime.timedelta(hours=1 if inside else 3)
    end = start + datetime.timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


@needs_nft
@pytest.mark.parametrize("timezone", ["Europe/Athens", "UTC"])
def test_the_kernel_counts_packets_inside_the_window_only(timezone, monkeypatch):
    monkeypatch.setenv("TZ", timezone)
    now = datetime.datetime.now(datetime.UTC).astimezone(zoneinfo.ZoneInfo(timezone))
    if now.hour in (0, 1, 2, 22, 23):  # keep both windows inside one local day
        pytest.skip("the windows around now would cross midnight")
    rules = []
    for name, inside in (("inside", True), ("outside", False)):
        schedule, problem, _ = parse_schedule({"hours": _window(now, inside)})
        assert not problem
        rules.append(f"{schedule_match(schedule)}counter name {name}")
    table = (
        "table inet t {\n counter inside { }\n counter outside { }\n"
        " chain out {\n  type filter hook output priority 0;\n"
        + "".join(f"  icmp type echo-request {rule}\n" for rule in rules)
        + " }\n}\n"
    )
    script = (
        "ip link set lo up && nft -f - && ping -c 3 -i 0.2 -W 1 127.0.0.1 >/dev/null && "
        "nft list counter inet t inside && nft list counter inet t outside"
    )
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], input=table, text=True, capture_output=True,
        env={"TZ": timezone, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    counts = [int(n) for n in re.findall(r"packets (\d+)", proc.stdout)]
    assert counts == [3, 0], proc.stdout


def test_the_clock_reloads_only_scheduled_tables_after_an_offset_change(tmp_path, monkeypatch):
    """kastro-firewall clock: the decision; load() itself is the helper's tested loader."""
    loaded: list[str] = []
    for name in ("ACTIVE", "PENDING", "UTC_OFFSET", "LIVE_DIGEST"):
        monkeypatch.setattr(helper, name, tmp_path / name.lower())
    monkeypatch.setattr(helper, "load", loaded.append)
    monkeypatch.setattr(helper, "live_digest", lambda: "digest")
    monkeypatch.setattr(helper, "utc_offset", lambda: "10800")
    assert "no time-of-day" in helper.cmd_clock(None)["reason"]
    helper.ACTIVE.write_text('table inet kastro { meta hour "08:00"-"20:00" accept }')
    helper.UTC_OFFSET.write_text("10800")
    assert helper.cmd_clock(None) == {"reloaded": False, "reason": "the UTC offset is unchanged"}
    helper.UTC_OFFSET.write_text("7200")  # loaded in winter; summer time began since
    helper.PENDING.write_text("{}")
    assert "pending" in helper.cmd_clock(None)["reason"] and not loaded
    helper.PENDING.unlink()
    assert helper.cmd_clock(None) == {"reloaded": True, "utc_offset_seconds": 10800, "was": "7200"}
    assert loaded == [helper.ACTIVE.read_text()]
