"""The SOC's decisions (block a source for a time), checked, kept and audited on the controller.

Every value that reaches a gateway's firewall is checked here first, strictly (addresses,
durations), and again on the gateway by kastro-firewall. The decisions in force are kept in
one JSON file, so a gateway that missed one gets it later (reconcile); every action is
appended to an audit log of JSON lines: who, what, why, when, and what each gateway said.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}(?:/[0-9]{1,3})?")
DURATION = re.compile(r"(?:[1-9][0-9]{0,5}[dhms]){1,4}")
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
MIN_TTL, MAX_TTL = 10, 90 * 86400  # 10 s: a lab sees expiry happen
# Wider than this needs --confirm-wide: a /23 of a provider is already hundreds of people.
WIDEST_V4, WIDEST_V6 = 24, 48
REASON_MAX = 300


class DecisionError(ValueError):
    """A decision that cannot be taken; the message names the argument and the fix."""


def parse_target(text: str, confirm_wide: bool = False) -> Network:
    """An address or network, strictly (no scope ids, no host bits, no ranges)."""
    if not ADDRESS.fullmatch(text):
        raise DecisionError(
            f"'{text}' is not an IP address or network: write e.g. 203.0.113.9, "
            "203.0.113.0/24 or 2001:db8:66::/48"
        )
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise DecisionError(
            f"'{text}': {exc} (a network is written with its first address, e.g. 203.0.113.0/24)"
        ) from exc
    widest = WIDEST_V4 if net.version == 4 else WIDEST_V6
    if net.prefixlen < widest and not confirm_wide:
        raise DecisionError(
            f"{net} is wider than /{widest} ({net.num_addresses:,} addresses): add "
            "--confirm-wide if that is really meant"
        )
    if net.is_loopback or net.is_link_local or net.is_multicast or net.is_unspecified:
        raise DecisionError(
            f"{net} is loopback, link-local, multicast or unspecified: not a source"
        )
    return net


def parse_ttl(text: str) -> int:
    """'1h30m' -> 5400 seconds, between a minute and 90 days."""
    if not DURATION.fullmatch(text):
        raise DecisionError(f"--ttl {text!r}: write a duration such as 30m, 1h, 7d or 1h30m")
    seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"([0-9]+)([dhms])", text))
    if not MIN_TTL <= seconds <= MAX_TTL:
        raise DecisionError(f"--ttl {text}: between 10s and 90d")
    return seconds


def duration_text(seconds: int) -> str:
    """5400 -> '1h30m': what kastro-firewall accepts."""
    out = ""
    for unit, size in UNITS.items():
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "1s"


def check_reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise DecisionError(
            "--reason is empty: say why (it goes to the audit log and NIS2 reports)"
        )
    if len(reason) > REASON_MAX or any(not ch.isprintable() for ch in reason):
        raise DecisionError(f"--reason: at most {REASON_MAX} printable characters")
    return reason


def protected_by(net: Network, allowlist: Iterable[str]) -> str | None:
    """The allowlist entry `net` overlaps, if any: those are never blocked."""
    for entry in allowlist:
        other = ipaddress.ip_network(entry, strict=False)
        if other.version == net.version and other.overlaps(net):
            return str(other)
    return None


KINDS = ("block", "isolate")


@dataclass
class Decision:
    """A block or an isolation in force: what, until when (None: until lifted), why, by whom.
    An isolation names the inventory host it isolates ('' for a device Kastro does not
    manage): that host enforces it on itself too."""

    target: str
    expires: float | None
    reason: str
    operator: str
    created: float = field(default_factory=time.time)
    kind: str = "block"
    host: str = ""

    def remaining(self, now: float) -> int | None:
        """Seconds left; None while it lasts until lifted."""
        return None if self.expires is None else max(0, int(self.expires - now))

    def in_force(self, now: float) -> bool:
        return self.expires is None or self.expires > now


def decision_key(kind: str, target: str) -> str:
    """Where a decision is kept: a block under its network (as before isolations existed),
    an isolation under 'isolate NETWORK'."""
    return target if kind == "block" else f"{kind} {target}"


class DecisionStore:
    """The decisions in force, in `decisions.json` (0600) beside the audit log."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "decisions.json"
        self.audit_path = directory / "audit.jsonl"

    def load(self, now: float | None = None) -> dict[str, Decision]:
        """Decisions not yet expired (expired ones are dropped on the next save)."""
        now = time.time() if now is None else now
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise DecisionError(
                f"{self.path} cannot be read ({exc}): restore it from the backup or move it "
                "away (the gateways keep their blocks; 'kastro respond list' shows them)"
            ) from exc
        decisions = {key: Decision(**value) for key, value in raw.items()}
        return {key: d for key, d in decisions.items() if d.in_force(now)}

    def save(self, decisions: dict[str, Decision]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps({k: asdict(d) for k, d in sorted(decisions.items())}, indent=2)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)

    def audit(self, record: dict[str, Any]) -> None:
        """Append one action to the audit log (JSON lines, 0600, never rewritten)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps({"time": time.time(), **record}, ensure_ascii=False, sort_keys=True)
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def audit_records(self) -> list[dict[str, Any]]:
        try:
            lines = self.audit_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]


def _login() -> str:
    try:
        return getpass.getuser()  # LOGNAME, USER, ..., else the account of this process
    except (KeyError, OSError):
        return "unknown"


def operator(explicit: str | None = None) -> str:
    """Who acts: --operator, else the user behind sudo, else the login user."""
    name = explicit or os.environ.get("SUDO_USER") or _login()
    if not re.fullmatch(r"[\w.@ -]{1,64}", name):
        raise DecisionError(f"--operator {name!r}: letters, digits, '.', '@', '-' only")
    return name
