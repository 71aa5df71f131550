"""A sensor's Suricata ruleset, built on the controller by suricata-update, offline.

Sources are only what the municipality controls: Kastro's municipal pack (shipped in this
package), tarballs or rule files on the controller (`file://`) and internal mirrors
(`https://`). suricata-update never reaches an index or ET Open: it gets its own empty
configuration, no distribution rules (the engine's event rules are loaded on the sensor from
its own package, version-matched) and only the URLs given. The admin's tuning (enable,
disable, drop, modify) is applied on every build, so an update never loses it.

The ruleset ends with a canary rule whose message carries the ruleset's digest: the sensor
sends one packet that only it matches, and an alert naming that digest proves that the running
engine has loaded exactly this ruleset (kastro.host.suricata).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kastro.host.suricata import CANARY_PORT, CANARY_SID  # one definition, the sensor's

PACK = Path(__file__).with_name("rules") / "kastro-municipal.rules"
RULES_FILE = "kastro.rules"
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
SOURCE_URL = re.compile(
    r"(?:file:///[A-Za-z0-9._/+-]{1,400}"
    r"|https://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/[A-Za-z0-9._/+%=&?~-]{0,400})"
)
# suricata-update's matchers: a SID, GID:SID, a regular expression, a group (file name) or a
# metadata value; nothing that could end a line or start another directive.
MATCHER = re.compile(
    r"(?:[0-9]{1,10}|[0-9]{1,10}:[0-9]{1,10}|re:[^\n\r\"]{1,200}"
    r"|group:[A-Za-z0-9_.*-]{1,100}|metadata:[A-Za-z0-9_ .-]{1,100})"
)
TEXT = re.compile(r"[^\n\r\"\\]{1,200}")
TIMEOUT = 600


class RulesetError(ValueError):
    """A source, a tuning entry or the build itself is wrong; the message names it."""


@dataclass(frozen=True)
class Source:
    name: str
    url: str


@dataclass
class Tuning:
    enable: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    modify: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Built:
    text: str
    sha256: str
    enabled: int
    canary: str


def sources(entries: Any, where: str = "suricata_rule_sources") -> list[Source]:
    """The admin's sources, checked: each {name, url}; names unique."""
    if not isinstance(entries, list):
        raise RulesetError(f"{where}: write a list of {{name, url}}")
    found: list[Source] = []
    for number, entry in enumerate(entries):
        at = f"{where}[{number}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "url"}:
            raise RulesetError(f"{at}: write exactly name and url")
        name, url = str(entry["name"]), str(entry["url"])
        if not SOURCE_NAME.fullmatch(name) or name == "kastro":
            raise RulesetError(
                f"{at}.name {name!r}: lower-case letters, digits, '-' (not 'kastro')"
            )
        if not SOURCE_URL.fullmatch(url) or ".." in url:
            raise RulesetError(
                f"{at}.url {url!r}: a file:///absolute/path on the controller or an https:// "
                "internal mirror (the sensors never fetch rules themselves)"
            )
        if url.startswith("file://") and not Path(url[len("file://") :]).exists():
            raise RulesetError(f"{at}.url {url}: no such file on the controller")
        if any(s.name == name for s in found):
            raise RulesetError(f"{at}.name {name}: used twice")
        found.append(Source(name, url))
    return found


def tuning(enable: Any, disable: Any, drop: Any, modify: Any) -> Tuning:
    """The admin's tuning, checked entry by entry (they go into suricata-update's files)."""
    result = Tuning()
    for what, entries, target in (
        ("suricata_rules_enable", enable, result.enable),
        ("suricata_rules_disable", disable, result.disable),
        ("suricata_rules_drop", drop, result.drop),
    ):
        if not isinstance(entries, list):
            raise RulesetError(f"{what}: write a list of SIDs or matchers (re:, group:)")
        for number, entry in enumerate(entries):
            text = str(entry)
            if not MATCHER.fullmatch(text):
                raise RulesetError(
                    f"{what}[{number}] {text!r}: a SID (2019401), GID:SID, re:REGEX, group:FILE "
                    "or metadata:VALUE, without quotes"
                )
            target.append(text)
    if not isinstance(modify, list):
        raise RulesetError("suricata_rules_modify: write a list of {match, from, to}")
    for number, entry in enumerate(modify):
        at = f"suricata_rules_modify[{number}]"
        if not isinstance(entry, dict) or set(entry) != {"match", "from", "to"}:
            raise RulesetError(f"{at}: write exactly match, from and to")
        match, old, new = (str(entry[k]) for k in ("match", "from", "to"))
        if not MATCHER.fullmatch(match):
            raise RulesetError(f"{at}.match {match!r}: a SID, GID:SID, re:, group: or metadata:")
        for key, value in (("from", old), ("to", new)):
            if not TEXT.fullmatch(value):
                raise RulesetError(f"{at}.{key} {value!r}: one line without quotes or '\\'")
        result.modify.append((match, old, new))
    return result


def build(
    found: list[Source],
    tuned: Tuning,
    variables: dict[str, dict[str, str]],
    suricata_version: str = "7.0.10",
) -> Built:
    """The ruleset: the pack and the sources, tuned, with the canary at the end. `variables`
    are the sensor's address and port groups: a rule naming one it lacks is disabled (as
    suricata-update does when Suricata runs beside it), so the sensor's `suricata -T` never
    meets an unknown variable."""
    with tempfile.TemporaryDirectory(prefix="kastro-rules-") as work:
        folder = Path(work)
        argv = _configure(folder, found, tuned, suricata_version)
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT, env=_environment(folder),
            check=False,
        )  # fmt: skip
        output = folder / "out" / "suricata.rules"
        if done.returncode != 0 or not output.is_file():
            raise RulesetError(f"suricata-update failed: {_errors(done.stdout + done.stderr)}")
        text = output.read_text(encoding="utf-8")
    known = {name for group in variables.values() for name in group}
    return with_canary(without_unknown_variables(text, known))


HEADER = re.compile(r"(?:alert|drop|pass|reject|rejectsrc|rejectdst|rejectboth)\s[^(]*\(")


def without_unknown_variables(text: str, known: set[str]) -> str:
    """Each active rule whose header names a variable outside `known`, commented out."""
    lines = []
    for line in text.splitlines():
        header = HEADER.match(line)
        names = set(re.findall(r"\$([A-Za-z0-9_]+)", header.group(0))) if header else set()
        lines.append(f"# {line}" if names - known else line)
    return "\n".join(lines) + "\n"


def with_canary(text: str) -> Built:
    body = text if text.endswith("\n") else text + "\n"
    digest = hashlib.sha256(body.encode()).hexdigest()
    token = digest[:16]
    canary = (
        f'alert udp any any -> 127.0.0.1 {CANARY_PORT} (msg:"KASTRO canary {token}"; '
        f'content:"kastro-canary-{token}"; sid:{CANARY_SID}; rev:1;)\n'
    )
    full = body + canary
    enabled = sum(1 for line in full.splitlines() if line.startswith(("alert", "drop", "pass")))
    return Built(full, hashlib.sha256(full.encode()).hexdigest(), enabled, token)


def _configure(folder: Path, found: list[Source], tuned: Tuning, version: str) -> list[str]:
    empty = folder / "dist"
    empty.mkdir()
    (folder / "update.yaml").write_text(
        f"sources: []\ndist-rule-directory: {empty}\n", encoding="utf-8"
    )
    files = {
        "enable.conf": tuned.enable,
        "disable.conf": tuned.disable,
        "drop.conf": tuned.drop,
        "modify.conf": [f'{m} "{a}" "{b}"' for m, a, b in tuned.modify],
    }
    for name, lines in files.items():
        (folder / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    beside = Path(sys.executable).with_name("suricata-update")  # the controller's virtualenv
    program = str(beside) if beside.exists() else shutil.which("suricata-update") or str(beside)
    argv = [
        program, "-q", "-D", str(folder / "data"), "-c", str(folder / "update.yaml"),
        "-o", str(folder / "out"), "--suricata-version", version, "--no-test", "--no-reload",
        "--fail", "--local", str(PACK),
        *(f"--{name.split('.')[0]}-conf={folder / name}" for name in files),
    ]  # fmt: skip
    for source in found:
        argv += ["--url", source.url]
    if not found:  # without a URL suricata-update would fetch ET Open: give it an empty one
        blank = folder / "none.rules"
        blank.write_text("", encoding="utf-8")
        argv += ["--url", f"file://{blank}"]
    return argv


def _environment(folder: Path) -> dict[str, str]:
    """No Suricata on the PATH (its -T runs on the sensor), no proxy, a private HOME."""
    (folder / "bin").mkdir(exist_ok=True)
    return {
        "PATH": str(folder / "bin"),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "VIRTUAL_ENV")},
    }


def _errors(text: str) -> str:
    lines = [line for line in text.splitlines() if "<Error>" in line or "Error" in line]
    return " | ".join(lines[-5:]) or text.strip()[-500:] or "no output"


THRESHOLD_TYPES = ("suppress", "limit", "threshold", "both")
TRACKS = ("by_src", "by_dst", "by_rule", "by_both")
ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}(?:/[0-9]{1,3})?")


def threshold_lines(entries: Any) -> list[str]:
    """threshold.config lines from suricata_thresholds, each entry checked:
    {sid, type: suppress, [track, ip]} or {sid, type: limit|threshold|both, track, count,
    seconds}."""
    if not isinstance(entries, list):
        raise RulesetError("suricata_thresholds: write a list of {sid, type, ...}")
    return [_threshold(raw, f"suricata_thresholds[{n}]") for n, raw in enumerate(entries)]


def _threshold(raw: Any, at: str) -> str:
    entry = dict(raw) if isinstance(raw, dict) else None
    if entry is None or not str(entry.get("sid", "")).isdigit():
        raise RulesetError(f"{at}: write sid (a number) and type ({', '.join(THRESHOLD_TYPES)})")
    kind, sid = str(entry.get("type", "")), int(entry["sid"])
    gid = int(entry.get("gid", 1)) if str(entry.get("gid", 1)).isdigit() else -1
    allowed = {"sid", "gid", "type", "track", "ip"} if kind == "suppress" else {
        "sid", "gid", "type", "track", "count", "seconds"}  # fmt: skip
    if kind not in THRESHOLD_TYPES or set(entry) - allowed or not 0 < sid < 2**32 or gid < 0:
        raise RulesetError(
            f"{at}: type is one of {', '.join(THRESHOLD_TYPES)}; suppress takes sid, gid, "
            "track and ip; the others sid, gid, track, count and seconds"
        )
    track = str(entry.get("track", ""))
    if (track or kind != "suppress") and track not in TRACKS:
        raise RulesetError(f"{at}.track {track!r}: one of {', '.join(TRACKS)}")
    head = f"gen_id {gid}, sig_id {sid}"
    if kind == "suppress":
        return f"suppress {head}" + (f", track {track}, ip {_ip(entry, at)}" if track else "")
    count, seconds = str(entry.get("count", "")), str(entry.get("seconds", ""))
    if not (count.isdigit() and seconds.isdigit() and int(count) > 0
            and 0 < int(seconds) <= 86400):  # fmt: skip
        raise RulesetError(f"{at}: count > 0 and seconds 1 to 86400")
    return f"threshold {head}, type {kind}, track {track}, count {count}, seconds {seconds}"


def _ip(entry: dict[str, Any], at: str) -> str:
    import ipaddress

    ip = str(entry.get("ip", ""))
    try:
        ipaddress.ip_network(ip, strict=False)
    except ValueError as error:
        raise RulesetError(f"{at}.ip {ip!r}: an address or network") from error
    if not ADDRESS.fullmatch(ip):
        raise RulesetError(f"{at}.ip {ip!r}: an address or network")
    return ip
