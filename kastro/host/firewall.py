"""kastro-firewall: apply, confirm and roll back Kastro's nftables table on this host.

Installed by the firewall role as /usr/local/sbin/kastro-firewall. Standard library only
(the exporter also needs python3-prometheus-client).

Commit-confirm, run on the host so it works when the controller cannot reach it any more:
  apply FILE --rollback-after N   load FILE in one nft transaction, keeping the SOC's blocklist
                                  entries, and arm a transient systemd timer that restores the
                                  previous table after N seconds
  confirm                         disarm the timer and make FILE the table loaded at boot
  rollback                        what the timer runs: restore the previous table
SOC actions (the allowlist is never blocked nor isolated):
  block ADDRESS [--timeout 1h]    unblock ADDRESS    blocked (lists blocks and isolations)
  counters                        packets the blocks and isolations dropped
  isolate ADDRESS [--timeout 1h]  the address may talk only to the allowlist (management, SOC)
  release ADDRESS
Other: boot (load the confirmed ruleset), status, needs-apply FILE; metrics: collect (writes
/run/kastro-firewall-metrics/firewall.prom) and exporter --listen ADDR:PORT (serves that file)
Only `table inet kastro` is ever touched: other tables (Docker, fail2ban, ...) are left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kastro.host import convention, textfile
from kastro.host.commands import run

TABLE = "inet kastro"
CONFIG_DIR = Path("/etc/kastro/firewall")
ACTIVE = CONFIG_DIR / "active.nft"  # the confirmed ruleset, loaded at boot
STATE_DIR = Path("/var/lib/kastro/firewall")
PENDING = STATE_DIR / "pending.json"  # an applied, not yet confirmed change
SNAPSHOT = STATE_DIR / "rollback.nft"  # the table as it was before that change
LAST_ROLLBACK = STATE_DIR / "last-rollback.json"
LIVE_DIGEST = STATE_DIR / "live.sha256"  # the live table as confirmed (see live_digest)
# The local UTC offset when the table was last loaded: nft turns a rule's local "meta hour"
# into UTC at load time, so a table with time-of-day rules is reloaded when it changes (DST).
UTC_OFFSET = STATE_DIR / "utc-offset"
SOC_SETS = STATE_DIR / "soc-sets.json"  # the SOC's entries with their end times: a reboot
TIMER_UNIT = "kastro-firewall-rollback"
BLOCKLISTS = ("blocklist_v4", "blocklist_v6")
ISOLATED = ("isolated_v4", "isolated_v6")
SETS = (*BLOCKLISTS, *ISOLATED)  # the SOC's sets: filled live, carried over every reload
# Recreating the table in one transaction: "table" creates it if absent so "delete" never fails.
RESET = f"table {TABLE}\ndelete table {TABLE}\n"


class FirewallError(Exception):
    pass


# Values that reach nft's command text: nft joins its arguments and parses them with its own
# grammar, so an argument vector alone does not protect; each value must match its pattern.
TIMEOUT = re.compile(r"(?:[1-9][0-9]{0,5}[dhms]){1,4}")  # 30m, 1h, 7d, 1h30m
SAFE_COMMENT = re.compile(r"[A-Za-z0-9 _.,:/@+-]{1,100}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def nft(*args: str, stdin: str | None = None) -> str:
    proc = run("nft", *args, stdin=stdin, check=False)
    if proc.returncode != 0:
        raise FirewallError(proc.stderr.strip() or f"nft {' '.join(args)} failed")
    return proc.stdout


def nft_json(*args: str) -> list[dict[str, Any]]:
    data = json.loads(nft("-j", *args))
    items: list[dict[str, Any]] = data.get("nftables", [])
    return items


def table_loaded() -> bool:
    try:
        nft("list", "table", *TABLE.split())
    except FirewallError:
        return False
    return True


def set_elements(name: str) -> list[dict[str, Any]]:
    """The live elements of one of our sets: {"val": str, "timeout": s|None, "expires": s|None}."""
    try:
        items = nft_json("list", "set", *TABLE.split(), name)
    except FirewallError:
        return []
    return parse_set_elements(items)


def parse_set_elements(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`nft -j list set ...` items -> each element's value, timeout, expiry and comment."""
    out = []
    for item in items:
        for elem in item.get("set", {}).get("elem", []):
            if isinstance(elem, dict) and "elem" in elem:
                inner = elem["elem"]
                value = inner["val"]
                out.append(
                    {
                        "val": _value_text(value),
                        "timeout": inner.get("timeout"),
                        "expires": inner.get("expires"),
                        "comment": inner.get("comment"),
                    }
                )
            else:
                out.append({"val": _value_text(elem), "timeout": None, "expires": None})
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if isinstance(value, dict) and "range" in value:
        return f"{value['range'][0]}-{value['range'][1]}"
    return str(value)


def carry_over() -> str:
    """nft statements that put the SOC's current blocklist entries back after a reload."""
    lines = []
    for name in SETS:
        for elem in set_elements(name):
            text = elem["val"]
            if elem.get("expires"):
                text += f" timeout {max(int(elem['expires']), 1)}s"
            if elem.get("comment") and SAFE_COMMENT.fullmatch(str(elem["comment"])):
                text += f' comment "{elem["comment"]}"'
            lines.append(f"add element {TABLE} {name} {{ {text} }}")
    return "\n".join(lines) + ("\n" if lines else "")


def save_entries(now: float | None = None) -> None:
    """After every SOC action: the SOC's sets with each entry's end time (0600, atomic), so
    blocks and isolations come back at boot with the time they had left."""
    now = time.time() if now is None else now
    data = {
        name: [
            {"val": e["val"], "until": now + int(e["expires"]) if e.get("expires") else None}
            for e in set_elements(name)
        ]
        for name in SETS
    }
    STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    temporary = SOC_SETS.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    temporary.replace(SOC_SETS)


def saved_entries(now: float | None = None) -> str:
    """nft statements for the saved entries still in force (each checked again: the file is
    root's, but a value reaches nft only as an address)."""
    now = time.time() if now is None else now
    try:
        data = json.loads(SOC_SETS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    lines = []
    for name in SETS:
        for entry in data.get(name, []) if isinstance(data, dict) else []:
            try:
                value = _text(_address(str(entry["val"])))
                until = entry.get("until")
            except (FirewallError, KeyError, TypeError):
                continue
            if until is not None and float(until) <= now + 1:
                continue
            timeout = f" timeout {int(float(until) - now)}s" if until is not None else ""
            lines.append(f"add element {TABLE} {name} {{ {value}{timeout} }}")
    return "\n".join(lines) + ("\n" if lines else "")


def without_blocklist_elements(listing: str) -> str:
    """A table listing minus the blocklists' entries: those are carried over live instead,
    so a rollback neither loses a block added since nor revives one removed since."""
    out, skipping, in_blocklist = [], False, False
    for line in listing.splitlines():
        stripped = line.strip()
        if stripped.startswith("set "):
            in_blocklist = stripped.split()[1] in SETS
        if in_blocklist and stripped.startswith("elements = {"):
            skipping = True
        if not skipping:
            out.append(line)
        elif stripped.endswith("}"):
            skipping = False
    return "\n".join(out) + "\n"


def load(ruleset: str) -> None:
    """One atomic transaction: the new table plus the SOC's entries, carried over from the
    live table, or after a reboot (no table yet) from what the last SOC action saved."""
    entries = carry_over() if table_loaded() else saved_entries()
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as tmp:
        tmp.write(ruleset + "\n" + entries)
    try:
        nft("-f", tmp.name)
    finally:
        Path(tmp.name).unlink()
    STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    UTC_OFFSET.write_text(utc_offset(), encoding="utf-8")


def utc_offset() -> str:
    """This host's local offset from UTC now, in seconds (the TZ of the process)."""
    return str(time.localtime().tm_gmtoff)


def cmd_clock(_: argparse.Namespace) -> dict[str, Any]:
    """Hourly (kastro-firewall-clock.timer): reload the confirmed table when it has time-of-day
    rules and the local UTC offset changed since it was loaded (summer time began or ended),
    so 'hours: 08:00-20:00' stays 08:00-20:00 local time. Never during a pending change."""
    if PENDING.exists():
        return {"reloaded": False, "reason": "a change is pending confirmation"}
    if not ACTIVE.exists() or "meta hour" not in ACTIVE.read_text(encoding="utf-8"):
        return {"reloaded": False, "reason": "no time-of-day rules"}
    loaded = UTC_OFFSET.read_text(encoding="utf-8").strip() if UTC_OFFSET.exists() else ""
    if loaded == utc_offset():
        return {"reloaded": False, "reason": "the UTC offset is unchanged"}
    load(ACTIVE.read_text(encoding="utf-8"))
    LIVE_DIGEST.write_text(live_digest(), encoding="utf-8")
    return {"reloaded": True, "utc_offset_seconds": int(utc_offset()), "was": loaded or None}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def systemctl(*args: str) -> None:
    run("systemctl", *args, check=False)


def disarm() -> None:
    systemctl("stop", f"{TIMER_UNIT}.timer")
    systemctl("stop", f"{TIMER_UNIT}.service")
    systemctl("reset-failed", f"{TIMER_UNIT}.timer", f"{TIMER_UNIT}.service")


def arm(seconds: int) -> None:
    """Start the transient timer that restores the last confirmed table after `seconds`."""
    proc = run(
        "systemd-run",
        f"--unit={TIMER_UNIT}",
        f"--on-active={seconds}s",
        "--timer-property=AccuracySec=1s",
        "--description=Kastro firewall: restore the previous ruleset unless confirmed",
        "/usr/local/sbin/kastro-firewall",
        "rollback",
        check=False,
    )
    if proc.returncode != 0:
        raise FirewallError(f"could not arm the rollback timer: {proc.stderr.strip()}")


def timer_armed() -> bool:
    proc = run("systemctl", "is-active", "--quiet", f"{TIMER_UNIT}.timer", check=False)
    return proc.returncode == 0


def cmd_apply(args: argparse.Namespace) -> dict[str, Any]:
    """Commit-confirm: the timer is armed before anything is loaded, and whatever happens a
    pending (unconfirmed) change always has a timer when this returns."""
    candidate = Path(args.file)
    if not 10 <= args.rollback_after <= 3600:
        raise FirewallError("--rollback-after: give 10..3600 seconds")
    nft("-c", "-f", str(candidate))  # nothing is loaded if this fails
    STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    if not PENDING.exists():
        # The last confirmed state: what a rollback must return to, even after several
        # unconfirmed attempts in a row.
        current = nft("list", "table", *TABLE.split()) if table_loaded() else ""
        SNAPSHOT.write_text(RESET + without_blocklist_elements(current), encoding="utf-8")
    disarm()
    try:
        arm(args.rollback_after)
    except FirewallError:
        if PENDING.exists():  # an earlier unconfirmed change is live: never leave it unguarded
            restore("could not arm the rollback timer")
        raise
    deadline = time.time() + args.rollback_after
    PENDING.write_text(
        json.dumps({"file": str(candidate), "sha256": sha256(candidate), "deadline": deadline}),
        encoding="utf-8",
    )
    try:
        load(candidate.read_text(encoding="utf-8"))
    finally:
        if PENDING.exists() and not timer_armed():
            try:
                arm(max(int(deadline - time.time()), 10))
            except FirewallError:
                restore("could not re-arm the rollback timer")
    return {"applied": str(candidate), "rollback_in_seconds": args.rollback_after}


def cmd_confirm(args: argparse.Namespace) -> dict[str, Any]:
    """Keep the pending change. Fails unless a change is pending and (with --sha256) it is
    the one the caller applied: a confirm that arrives after the rollback must not report
    success."""
    if not PENDING.exists():
        last = LAST_ROLLBACK.read_text(encoding="utf-8") if LAST_ROLLBACK.exists() else "{}"
        raise FirewallError(
            "nothing is pending: the change was already rolled back or confirmed "
            f"(last rollback: {last.strip()})"
        )
    pending = json.loads(PENDING.read_text(encoding="utf-8"))
    if args.sha256:
        if not SHA256.fullmatch(args.sha256):
            raise FirewallError("--sha256: give the 64 hex digits of the applied file")
        if pending.get("sha256") != args.sha256:
            raise FirewallError(
                f"the pending change is {pending.get('sha256')}, not {args.sha256}: "
                "another apply ran since; nothing was confirmed"
            )
    if Path(pending["file"]).exists() and sha256(Path(pending["file"])) != pending["sha256"]:
        raise FirewallError(f"{pending['file']} changed since it was applied; not confirmed")
    disarm()
    CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    if Path(pending["file"]).resolve() != ACTIVE.resolve():
        shutil.copyfile(pending["file"], ACTIVE)
    ACTIVE.chmod(0o600)
    LIVE_DIGEST.write_text(live_digest(), encoding="utf-8")
    PENDING.unlink()
    SNAPSHOT.unlink(missing_ok=True)
    return {"confirmed": True, "sha256": sha256(ACTIVE)}


def live_digest() -> str:
    """A digest of the live table's rules, chains and static sets, without what changes by
    itself (counter values, rule handles, the SOC's blocklist entries): if someone flushes a
    chain or edits a rule by hand, this changes and the next run repairs it."""
    if not table_loaded():
        return ""
    items = nft_json("list", "table", *TABLE.split())
    return hashlib.sha256(
        json.dumps([_stable(i) for i in items], sort_keys=True).encode()
    ).hexdigest()


def _stable(item: dict[str, Any]) -> Any:
    """One top-level item of `nft -j list table`: blocklist sets without their elements."""
    if "set" in item and item["set"].get("name") in SETS:
        return {"set": {k: v for k, v in item["set"].items() if k not in ("elem", "handle")}}
    return _without_volatile(item)


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_volatile(v)
            for k, v in value.items()
            if k not in ("handle", "packets", "bytes", "expires", "metainfo")
        }
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def restore(reason: str) -> dict[str, Any]:
    snapshot = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else RESET
    load(snapshot)
    # The table is the confirmed state again (re-read from its listing, so its rules print
    # a little differently): that is now the live state to compare against.
    LIVE_DIGEST.write_text(live_digest(), encoding="utf-8")
    record = {"time": time.time(), "reason": reason}
    if PENDING.exists():
        record["rejected_sha256"] = json.loads(PENDING.read_text(encoding="utf-8"))["sha256"]
        PENDING.unlink()
    LAST_ROLLBACK.write_text(json.dumps(record), encoding="utf-8")
    print(f"kastro-firewall: restored the previous ruleset ({reason})", flush=True)
    return {"rolled_back": True, **record}


def cmd_rollback(_: argparse.Namespace) -> dict[str, Any]:
    if not PENDING.exists():
        return {"rolled_back": False, "reason": "nothing pending"}
    return restore("the change was not confirmed in time")


def cmd_boot(_: argparse.Namespace) -> dict[str, Any]:
    """At boot: the confirmed ruleset. A change still pending at shutdown was never confirmed."""
    if PENDING.exists():
        PENDING.unlink()
        SNAPSHOT.unlink(missing_ok=True)
    if not ACTIVE.exists():
        return {"loaded": False, "reason": f"{ACTIVE} does not exist yet"}
    load(ACTIVE.read_text(encoding="utf-8"))
    LIVE_DIGEST.write_text(live_digest(), encoding="utf-8")
    return {"loaded": True, "sha256": sha256(ACTIVE)}


def cmd_status(_: argparse.Namespace) -> dict[str, Any]:
    return {
        "table_loaded": table_loaded(),
        "pending": json.loads(PENDING.read_text(encoding="utf-8")) if PENDING.exists() else None,
        "active_sha256": sha256(ACTIVE) if ACTIVE.exists() else None,
        "last_rollback": (
            json.loads(LAST_ROLLBACK.read_text(encoding="utf-8"))
            if LAST_ROLLBACK.exists()
            else None
        ),
    }


def cmd_needs_apply(args: argparse.Namespace) -> dict[str, Any]:
    candidate = Path(args.file)
    reasons = []
    if not table_loaded():
        reasons.append("table inet kastro is not loaded")
    if PENDING.exists():
        reasons.append("an earlier change was never confirmed")
    if not ACTIVE.exists() or sha256(ACTIVE) != sha256(candidate):
        reasons.append("the rendered ruleset differs from the confirmed one")
    elif not reasons:
        recorded = LIVE_DIGEST.read_text(encoding="utf-8") if LIVE_DIGEST.exists() else ""
        if recorded != live_digest():
            reasons.append("the live table was changed by hand (rules, chains or sets differ)")
    return convention.needs_apply(reasons)


ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}(?:/[0-9]{1,3})?")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> Network:
    """An address or network, strictly: Python also accepts IPv6 scope ids ('fe80::1%eth0'),
    which would carry any text into nft's command, so only hex digits, dots, colons and a
    prefix length pass."""
    try:
        if not ADDRESS.fullmatch(text):
            raise ValueError(text)
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise FirewallError(f"'{text}' is not an IP address or network") from exc
    if getattr(net.network_address, "scope_id", None):
        raise FirewallError(f"'{text}': scoped addresses cannot be blocked")
    return net


def _allowlisted(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    name = "allowlist_v4" if net.version == 4 else "allowlist_v6"
    for elem in set_elements(name):
        if net.overlaps(ipaddress.ip_network(elem["val"], strict=False)):
            return str(elem["val"])
    return None


def seconds(duration: str) -> int:
    """'1h30m' -> 5400; the text has matched TIMEOUT already."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([dhms])", duration))


def block_statements(
    set_name: str, net: Network, timeout: int | None, live: list[dict[str, Any]]
) -> tuple[list[list[str]], dict[str, Any]]:
    """The nft transactions that block `net` for `timeout` seconds (None: until unblocked)
    given the set's live elements, and what they do. A block never shortens one already
    there: a repeated block keeps the later expiry; a network replaces the entries inside
    it, keeping the latest of their expiries; an address inside a blocked network is already
    blocked (the network's entry is extended if needed). Two transactions when entries are
    replaced: nft checks a new interval against the set as it was before the transaction,
    so the entries inside must be gone first."""
    inside, cover = [], None
    for elem in live:
        other = ipaddress.ip_network(str(elem["val"]), strict=False)
        if other.version != net.version or not net.overlaps(other):
            continue
        if other != net and net.subnet_of(other):  # type: ignore[arg-type]  # same version
            cover = elem
        else:
            inside.append(elem)
    entries = [cover] if cover else inside
    target = ipaddress.ip_network(str(cover["val"]), strict=False) if cover else net
    expiry = _latest(timeout, entries)
    first = []
    for elem in entries:  # add-then-delete: a delete of an element that expired meanwhile fails
        first += [
            f"add element {TABLE} {set_name} {{ {elem['val']} }}",
            f"delete element {TABLE} {set_name} {{ {elem['val']} }}",
        ]
    timeout_text = f" timeout {expiry}s" if expiry is not None else ""
    second = [f"add element {TABLE} {set_name} {{ {target}{timeout_text} }}"]
    same = [e for e in entries if ipaddress.ip_network(str(e["val"]), strict=False) == target]
    outcome = {
        "blocked": _text(target),
        "expires_in": expiry,
        "covered_by": _text(target) if cover else None,
        "replaced": [str(e["val"]) for e in entries if e not in same],
        "extended": bool(same),
    }
    return ([first, second] if first else [second]), outcome


def _text(net: Network) -> str:
    """As nft lists it: an address without /32 or /128."""
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _latest(timeout: int | None, entries: list[dict[str, Any]]) -> int | None:
    """The later of a new timeout and the entries' remaining times; None is 'never'."""
    if timeout is None or any(not e.get("expires") and not e.get("timeout") for e in entries):
        return None
    return max([timeout, *(int(e.get("expires") or 0) for e in entries)])


def cmd_block(args: argparse.Namespace) -> dict[str, Any]:
    return _add(BLOCKLISTS, args)


def cmd_isolate(args: argparse.Namespace) -> dict[str, Any]:
    net = _address(args.address)
    _refuse_own_session(net)
    return _add(ISOLATED, args)


def _add(sets: tuple[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Block or isolate `args.address` for `args.timeout` (see block_statements)."""
    net = _address(args.address)
    protected = _allowlisted(net)
    if protected:
        raise FirewallError(
            f"{net} overlaps the allowlist entry {protected} (management hosts, the SOC); "
            "it is never blocked or isolated. Change firewall_allowlist in the inventory if "
            "this is wrong."
        )
    if args.timeout and not TIMEOUT.fullmatch(args.timeout):
        raise FirewallError(
            f"--timeout {args.timeout!r}: write a duration such as 30m, 1h, 7d or 1h30m"
        )
    name = sets[0] if net.version == 4 else sets[1]
    timeout = seconds(args.timeout) if args.timeout else None
    live = set_elements(name)
    transactions, outcome = block_statements(name, net, timeout, live)
    try:
        for statements in transactions:
            nft("-f", "-", stdin="\n".join(statements) + "\n")
    except FirewallError:
        if len(transactions) > 1:  # the replaced entries go back as they were
            nft("-f", "-", stdin=_restore(name, live))
        raise
    save_entries()
    return {**outcome, "set": name, "timeout": args.timeout, **_after(name)}


def _refuse_own_session(net: Network) -> None:
    """Isolating the address this SSH session arrived on, from a client the allowlist does
    not cover, would cut the session, and with it the way back (release): refused. A session
    on another address (a management interface) is not affected."""
    fields = (os.environ.get("SSH_CONNECTION") or "").split()
    if len(fields) != 4:
        return
    try:
        client, local = ipaddress.ip_network(fields[0]), ipaddress.ip_address(fields[2])
    except ValueError:
        return
    if local in net and not _allowlisted(client):
        raise FirewallError(
            f"isolating {net} would cut this SSH session from {fields[0]} to {fields[2]}, "
            "which the allowlist does not cover: connect from a management network, or add "
            "the SOC's address to firewall_allowlist"
        )


def _restore(set_name: str, live: list[dict[str, Any]]) -> str:
    lines = []
    for elem in live:
        expires = f" timeout {max(int(elem['expires']), 1)}s" if elem.get("expires") else ""
        lines.append(f"add element {TABLE} {set_name} {{ {elem['val']}{expires} }}")
    return "\n".join(lines) + "\n"


def cmd_unblock(args: argparse.Namespace) -> dict[str, Any]:
    return _remove(BLOCKLISTS, args)


def cmd_release(args: argparse.Namespace) -> dict[str, Any]:
    return _remove(ISOLATED, args)


def _remove(sets: tuple[str, str], args: argparse.Namespace) -> dict[str, Any]:
    net = _address(args.address)
    name = sets[0] if net.version == 4 else sets[1]
    live = set_elements(name)
    networks = [ipaddress.ip_network(str(e["val"]), strict=False) for e in live]
    if net not in networks:
        cover = [str(n) for n in networks if n.version == net.version and n.overlaps(net)]
        return {
            "unblocked": None,
            "not_blocked": str(net),
            "inside": cover,  # blocked as part of these: unblock them instead
            "set": name,
            **_after(name),
        }
    statements = [
        f"add element {TABLE} {name} {{ {net} }}",
        f"delete element {TABLE} {name} {{ {net} }}",
    ]
    nft("-f", "-", stdin="\n".join(statements) + "\n")
    save_entries()
    return {"unblocked": _text(net), "set": name, **_after(name)}


def _after(name: str) -> dict[str, Any]:
    """Every answer to a change: the changed set, and all the SOC's sets as they are now."""
    sets = cmd_blocked(argparse.Namespace())
    return {"elements": sets[name], "sets": sets}


def cmd_counters(_: argparse.Namespace) -> dict[str, Any]:
    """The SOC's drop counters (blocklist_*, isolated_*): packets and bytes so far."""
    out = {}
    for item in nft_json("list", "counters", "table", *TABLE.split()):
        counter = item.get("counter") or {}
        if str(counter.get("name", "")).startswith(("blocklist_", "isolated_")):
            out[counter["name"]] = {"packets": counter["packets"], "bytes": counter["bytes"]}
    return {"counters": out}


def cmd_blocked(_: argparse.Namespace) -> dict[str, Any]:
    return {name: set_elements(name) for name in SETS}


class NftCollector:
    """Reads the named counters at collect time: nothing is cached, nothing goes stale."""

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("kastro_firewall_up", "1 if table inet kastro could be read")
        packets = CounterMetricFamily(
            "kastro_firewall_packets",
            "Packets counted by a named rule counter",
            labels=["counter", "comment"],
        )
        octets = CounterMetricFamily(
            "kastro_firewall_bytes",
            "Bytes counted by a named rule counter",
            labels=["counter", "comment"],
        )
        elements = GaugeMetricFamily(
            "kastro_firewall_set_elements", "Entries in a SOC set", labels=["set"]
        )
        pending = GaugeMetricFamily(
            "kastro_firewall_change_pending", "1 while an applied change awaits confirmation"
        )
        rollback = GaugeMetricFamily(
            "kastro_firewall_last_rollback_timestamp_seconds",
            "When the host last restored its previous ruleset by itself (0: never)",
        )
        try:
            for item in nft_json("list", "counters", "table", *TABLE.split()):
                counter = item.get("counter")
                if counter:
                    labels = [counter["name"], counter.get("comment", "")]
                    packets.add_metric(labels, counter["packets"])
                    octets.add_metric(labels, counter["bytes"])
            for name in (*SETS, "allowlist_v4", "allowlist_v6"):
                elements.add_metric([name], len(set_elements(name)))
            up.add_metric([], 1)
        except (FirewallError, json.JSONDecodeError, KeyError, OSError):
            up.add_metric([], 0)
        pending.add_metric([], 1 if PENDING.exists() else 0)
        last = 0.0
        if LAST_ROLLBACK.exists():
            last = float(json.loads(LAST_ROLLBACK.read_text(encoding="utf-8"))["time"])
        rollback.add_metric([], last)
        yield from (up, packets, octets, elements, pending, rollback)


def cmd_collect(args: argparse.Namespace) -> dict[str, Any]:
    textfile.publish(NftCollector(), args.output, args.interval, METRICS_PREFIX, args.once)
    return {"written": str(args.output)}


def cmd_exporter(args: argparse.Namespace) -> dict[str, Any]:
    textfile.serve(args.textfile, args.listen)
    return {}


METRICS_PREFIX = "kastro_firewall"
METRICS_FILE = "/run/kastro-firewall-metrics/firewall.prom"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-firewall", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("apply", help="load a ruleset file and arm the rollback timer")
    p.add_argument("file")
    p.add_argument("--rollback-after", type=int, required=True, metavar="SECONDS")
    p.set_defaults(func=cmd_apply)
    p = sub.add_parser("confirm", help="keep the applied ruleset")
    p.add_argument("--sha256", help="confirm only if the pending change is this file's")
    p.set_defaults(func=cmd_confirm)
    sub.add_parser("rollback", help="restore the previous ruleset").set_defaults(func=cmd_rollback)
    sub.add_parser("boot", help="load the confirmed ruleset").set_defaults(func=cmd_boot)
    sub.add_parser(
        "clock", help="reload time-of-day rules after a change of UTC offset"
    ).set_defaults(func=cmd_clock)
    sub.add_parser("status", help="what is loaded, pending, rolled back").set_defaults(
        func=cmd_status
    )
    p = sub.add_parser("needs-apply", help="whether FILE differs from what is confirmed")
    p.add_argument("file")
    p.set_defaults(func=cmd_needs_apply)
    soc_actions = (
        ("block", cmd_block, "add an address or network to the blocklist", "until unblocked"),
        ("unblock", cmd_unblock, "remove an address or network from the blocklist", ""),
        ("isolate", cmd_isolate, "let an address talk only to the allowlist", "until released"),
        ("release", cmd_release, "end an isolation", ""),
    )
    for name, func, text, lasting in soc_actions:
        p = sub.add_parser(name, help=text)
        p.add_argument("address")
        if lasting:
            p.add_argument("--timeout", help=f"e.g. 30m, 1h, 7d (default: {lasting})")
        p.set_defaults(func=func)
    listing = sub.add_parser("blocked", help="list the blocklists and isolations")
    listing.set_defaults(func=cmd_blocked)
    counters = sub.add_parser("counters", help="the SOC's drop counters")
    counters.set_defaults(func=cmd_counters)
    textfile.add_collect_command(sub, METRICS_FILE, 15.0, "the counters").set_defaults(
        func=cmd_collect
    )
    textfile.add_exporter_command(sub, "127.0.0.1:9552", METRICS_FILE).set_defaults(
        func=cmd_exporter
    )
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except FirewallError as exc:
        print(f"kastro-firewall {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
