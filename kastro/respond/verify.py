"""`--verify`: after a change, a probe host pings an address through the gateways and the
gateways' drop counters are read before and after. A block or isolation is verified when
the probe got no answer and the SOC's counters went up by its packets; an unblock or
release when the probe was answered. In tests the probe host is the lab's attacker."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kastro.respond import execute
from kastro.respond.gateways import Gateway

# Bounded: three echo requests, 0.3 s apart, a second's wait for each answer.
PING = ("ping", "-n", "-q", "-c", "3", "-i", "0.3", "-W", "1")
COUNTER_PREFIX = {"block": "blocklist_", "isolate": "isolated_"}
STOPS = ("block", "isolate")


@dataclass
class Verification:
    probe: str
    target: str
    answered: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    verified: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    hosts: Sequence[Gateway], probe: Gateway, target: str, action: str, source: str = ""
) -> Verification:
    """Probe `target` from `probe` and count the drops on `hosts` (`action`: block, unblock,
    isolate, release). `target` has been checked as one address already; `source`, when given,
    is the probe's own address to send from (the one that was blocked, on a probe host that
    has several)."""
    kind = "isolate" if action in ("isolate", "release") else "block"
    out = Verification(probe.name, target)
    before = execute.run(hosts, ["counters"])
    pinned = ["-I", str(ipaddress.ip_address(source))] if source else []
    sent = execute.run_command([probe], [*PING, *pinned, target])[probe.name]
    after = execute.run(hosts, ["counters"])
    if not sent.ok:
        out.error = f"the probe from {probe.name} did not run: {sent.error}"
        return out
    match = re.search(r"(\d+) (?:packets )?received", str(sent.data.get("stdout", "")))
    out.answered = int(match.group(1)) if match else None
    for host in hosts:
        if before[host.name].ok and after[host.name].ok:
            out.dropped[host.name] = _drops(after[host.name].data, kind) - _drops(
                before[host.name].data, kind
            )
    if out.answered is None:
        out.error = f"ping's answer was not understood: {str(sent.data.get('stdout'))[-200:]!r}"
    elif action in STOPS:
        out.verified = out.answered == 0 and sum(out.dropped.values()) > 0
    else:
        out.verified = out.answered > 0
    return out


def _drops(data: dict[str, Any], kind: str) -> int:
    counters = data.get("counters") or {}
    return sum(
        int(value.get("packets", 0))
        for name, value in counters.items()
        if name.startswith(COUNTER_PREFIX[kind])
    )
