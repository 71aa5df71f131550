"""OpenSCAP content and results: the ANSSI-BP-028 profiles for Debian 12, and the score with
its waivers.

bookworm's own `ssg-debian` has no Debian 12 content; trixie's 0.1.76 (architecture all, data
only) does, and bookworm's `oscap` reads it. The package is fetched from the Debian mirror by
its exact file name and checked against the SHA-256 the trixie index gave, then unpacked with
`dpkg-deb` into ``.kastro/ssg/``.

A score is the share of *applicable* rules that pass (pass / (pass + fail + error)); rules that
are not applicable, not checked or informational do not count. Every failure must be in the
waiver file (rule, reason, compensating control, owner, review-by date); `check_waivers`
reports the failures nobody waived and the waivers that are expired or no longer needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kastro.lab.image import debian_mirror

SSG_DEB = "pool/main/s/scap-security-guide/ssg-debian_0.1.76-1_all.deb"
SSG_SHA256 = "f6880719015c16e8e221bc2503c0e5a9f83d6a09fc6f9292d3522e46bf4fc9d7"
DATASTREAM = "usr/share/xml/scap/ssg/content/ssg-debian12-ds.xml"
STATE = Path(".kastro/ssg")
PROFILE_PREFIX = "xccdf_org.ssgproject.content_profile_"
RULE_PREFIX = "xccdf_org.ssgproject.content_rule_"
XCCDF = "{http://checklists.nist.gov/xccdf/1.2}"
COUNTED = ("pass", "fail", "error")


class ScapError(RuntimeError):
    """The content could not be fetched or a result file could not be read."""


def datastream(state: Path = STATE, mirror: str | None = None) -> Path:
    """The Debian 12 data stream, fetched and unpacked once."""
    target = state / "0.1.76" / DATASTREAM
    if target.exists():
        return target
    url = f"{(mirror or debian_mirror()).rstrip('/')}/{SSG_DEB}"
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:  # noqa: S310 (mirror URL)
            body = answer.read()
    except OSError as error:
        raise ScapError(f"could not fetch {url}: {error}") from error
    if hashlib.sha256(body).hexdigest() != SSG_SHA256:
        raise ScapError(f"{url} is not the ssg-debian 0.1.76-1 package (SHA-256 differs)")
    (state / "0.1.76").mkdir(parents=True, exist_ok=True)  # dpkg-deb makes one level only
    with tempfile.NamedTemporaryFile(suffix=".deb") as deb:
        deb.write(body)
        deb.flush()
        subprocess.run(
            ["dpkg-deb", "-x", deb.name, str(state / "0.1.76")], check=True, capture_output=True
        )
    return target


TAILORED_PREFIX = "xccdf_org.kastro_profile_"
# Values ANSSI leaves to the site (SSG asks them as tailoring variables).
KASTRO_VALUES = {"var_sudo_dedicated_group": "kastro-admins"}


def tailoring(profile: str, values: Mapping[str, str] = KASTRO_VALUES) -> str:
    """An XCCDF tailoring file: `profile` with Kastro's values for the site's variables (scan
    with --tailoring-file and --profile tailored_profile(profile))."""
    root = ET.Element(f"{XCCDF}Tailoring", {"id": "xccdf_org.kastro_tailoring_endpoint"})
    ET.SubElement(root, f"{XCCDF}version", {"time": "2026-12-06T00:00:00"}).text = "1"
    tailored = ET.SubElement(
        root,
        f"{XCCDF}Profile",
        {"id": tailored_profile(profile), "extends": PROFILE_PREFIX + profile},
    )
    ET.SubElement(tailored, f"{XCCDF}title").text = f"{profile}, Kastro's site values"
    for name, value in values.items():
        setting = ET.SubElement(
            tailored, f"{XCCDF}set-value", {"idref": f"xccdf_org.ssgproject.content_value_{name}"}
        )
        setting.text = value
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def tailored_profile(profile: str) -> str:
    return TAILORED_PREFIX + profile


@dataclass(frozen=True)
class Score:
    counts: Mapping[str, int]
    failed: tuple[str, ...]

    @property
    def applicable(self) -> int:
        return sum(self.counts.get(result, 0) for result in COUNTED)

    @property
    def percent(self) -> float:
        return 100.0 * self.counts.get("pass", 0) / self.applicable if self.applicable else 0.0


def profile_rules(datastream_xml: Path, profile: str) -> frozenset[str]:
    """The rules a profile of the data stream selects (short names, without the prefix)."""
    selected = set()
    for _event, element in ET.iterparse(datastream_xml):  # noqa: S314 (pinned, checked content)
        if element.tag == f"{XCCDF}Profile":
            if element.get("id") == PROFILE_PREFIX + profile:
                for choice in element.iter(f"{XCCDF}select"):
                    rule = choice.get("idref", "")
                    if choice.get("selected") == "true" and rule.startswith(RULE_PREFIX):
                        selected.add(rule.removeprefix(RULE_PREFIX))
            element.clear()
    if not selected:
        raise ScapError(f"the data stream has no profile {profile!r}")
    return frozenset(selected)


def score(results_xml: str | bytes, only: frozenset[str] | None = None) -> Score:
    """The score of one `oscap xccdf eval --results` file (of the rules in `only` if given: a
    narrower profile's share of a wider profile's scan)."""
    try:
        root = ET.fromstring(results_xml)  # noqa: S314 (our own scanner's output)
    except ET.ParseError as error:
        raise ScapError(f"the results are not XCCDF XML: {error}") from error
    counts: Counter[str] = Counter()
    failed = []
    for rule in root.iter(f"{XCCDF}rule-result"):
        name = rule.get("idref", "").removeprefix(RULE_PREFIX)
        if only is not None and name not in only:
            continue
        result = rule.findtext(f"{XCCDF}result", default="")
        counts[result] += 1
        if result in ("fail", "error"):
            failed.append(name)
    if not counts:
        raise ScapError("the results hold no rule results (was the profile name right?)")
    return Score(counts=dict(counts), failed=tuple(sorted(failed)))


WAIVER_FIELDS = ("rule", "reason", "compensating_control", "owner", "review_by")


@dataclass(frozen=True)
class WaiverCheck:
    unwaived: tuple[str, ...]
    expired: tuple[str, ...]
    unused: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.unwaived or self.expired or self.unused)


def check_waivers(
    failed: Sequence[str], waivers: Sequence[Mapping[str, Any]], today: dt.date
) -> WaiverCheck:
    """Every failure waived, no waiver past its review date, no waiver for a rule that passes.
    A waiver names one `rule` or several `rules` (one reason for a group, e.g. partitions)."""
    by_rule: dict[str, Mapping[str, Any]] = {}
    for number, waiver in enumerate(waivers, start=1):
        rules = waiver.get("rules") or ([waiver["rule"]] if waiver.get("rule") else [])
        fields = [f for f in WAIVER_FIELDS if f != "rule"]
        missing = [f for f in fields if not str(waiver.get(f) or "").strip()]
        if not rules:
            missing.insert(0, "rule (or rules)")
        if missing:
            raise ScapError(f"waiver {number}: {', '.join(missing)} missing")
        for rule in rules:
            by_rule[str(rule)] = waiver
    expired = [rule for rule, waiver in by_rule.items() if _date(waiver["review_by"], rule) < today]
    return WaiverCheck(
        unwaived=tuple(sorted(set(failed) - set(by_rule))),
        expired=tuple(sorted(expired)),
        unused=tuple(sorted(set(by_rule) - set(failed))),
    )


def _date(value: Any, rule: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as error:
        raise ScapError(f"waiver {rule}: review_by {value!r} is not a date (YYYY-MM-DD)") from error
