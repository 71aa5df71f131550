"""kastro-uplinks: a gateway's internet uplinks, and the failover between them.

Installed by the uplinks role as /usr/local/sbin/kastro-uplinks; reads /etc/kastro/uplinks.json
(compiled on the controller from kastro_municipality.uplinks: kastro.inventory.published).

`apply` (at boot, and when the role finds the host differs) puts each uplink's addresses on its
port, gives each uplink a routing table with the default route through its ISP's router, and
installs the policy rules:

    10100  lookup main suppress_prefixlength 0   the municipality's own routes first
    10110+N fwmark MARK_N lookup TABLE_N         a connection stays on the uplink it used
    10120+N from NETWORK_N lookup TABLE_N        the gateway's own replies from an uplink
    10125  iif lo lookup main                    (local_main: the lab's own default route)
    10130  lookup 100                            the rest: the uplink in use

The firewall marks connections (ct mark MARK_N) that arrive by or leave through uplink N, so a
published service answers through the ISP it was reached by and a connection keeps its NAT
address while its uplink lives.

`watch` (kastro-uplinks.service) pings each uplink's probe addresses through that uplink's own
table every `interval` seconds, whichever uplink is in use. An uplink is down after `down_after`
rounds in a row without an answer (an ISP that goes silent keeps its link up: the probes are
beyond it), up again after `up_after` rounds in a row with one (so a flapping ISP does not drag
the traffic back and forth). Table 100 points at the first uplink in the model's order that is
up. Metrics: node_exporter textfile kastro_uplinks.prom.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kastro.host import convention, textfile
from kastro.host.commands import run
from kastro.host.links import addresses_of

CONFIG = Path("/etc/kastro/uplinks.json")
STATE = Path("/var/lib/kastro/uplinks-applied.json")
METRICS = Path("/var/lib/prometheus/node-exporter/kastro_uplinks.prom")
EGRESS_TABLE = 100
PRIORITY_MAIN, PRIORITY_MARK, PRIORITY_FROM, PRIORITY_LOCAL, PRIORITY_EGRESS = (
    10100,
    10110,
    10120,
    10125,
    10130,
)
PRIORITY_RANGE = range(10100, 10200)
MARK_MASK = 0xFFFF
IFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class ConfigValueError(ValueError):
    """A value in uplinks.json that is not what the role writes; nothing is applied."""


@dataclass(frozen=True)
class Uplink:
    name: str
    interface: str
    table: int
    mark: int
    addresses: tuple[str, ...]
    gateways: dict[int, str]  # family -> the ISP's router
    networks: dict[int, str]  # family -> the ISP's network
    probe: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    uplinks: tuple[Uplink, ...]
    interval: float = 0.5
    timeout: float = 0.4
    down_after: float = 3
    up_after: float = 10
    local_main: bool = False


def _address(text: Any, where: str, version: int | None = None, prefix: bool = False) -> str:
    try:
        value = ipaddress.ip_interface(text) if prefix else ipaddress.ip_address(text)
    except (ValueError, TypeError):
        raise ConfigValueError(f"{where}: {text!r} is not an IP address") from None
    if (version and value.version != version) or (not prefix and "/" in str(text)):
        raise ConfigValueError(f"{where}: {text!r} is not an IPv{version} address")
    return str(text)


def _network(text: Any, where: str, version: int) -> str:
    try:
        value = ipaddress.ip_network(text)
    except (ValueError, TypeError):
        raise ConfigValueError(f"{where}: {text!r} is not a network") from None
    if value.version != version:
        raise ConfigValueError(f"{where}: {text!r} is not an IPv{version} network")
    return str(value)


def _uplink(raw: dict[str, Any], i: int) -> Uplink:
    where = f"uplinks[{i}]"
    name, iface = str(raw.get("name")), str(raw.get("interface"))
    if not NAME.fullmatch(name) or not IFACE.fullmatch(iface):
        raise ConfigValueError(f"{where}: bad name {name!r} or interface {iface!r}")
    table, mark = raw.get("table"), raw.get("mark")
    if not (isinstance(table, int) and 100 < table < 250 and isinstance(mark, int)):
        raise ConfigValueError(f"{where}: bad table {table!r} or mark {mark!r}")
    if not 0 < mark <= MARK_MASK:
        raise ConfigValueError(f"{where}: mark {mark!r} is out of range")
    gateways, networks = {}, {}
    for family in (4, 6):
        if raw.get(f"gateway_ipv{family}"):
            gateways[family] = _address(raw[f"gateway_ipv{family}"], where, family)
        if raw.get(f"network_ipv{family}"):
            networks[family] = _network(raw[f"network_ipv{family}"], where, family)
    return Uplink(
        name=name,
        interface=iface,
        table=table,
        mark=mark,
        addresses=tuple(_address(a, where, prefix=True) for a in raw.get("addresses") or []),
        gateways=gateways,
        networks=networks,
        probe=tuple(_address(a, where, 4) for a in raw.get("probe") or []),
    )


def parse_config(raw: Any) -> Config:
    """uplinks.json, every value checked before any reaches a command line."""
    if not isinstance(raw, dict) or not isinstance(raw.get("uplinks"), list):
        raise ConfigValueError("not an object with a list of uplinks")
    uplinks = tuple(_uplink(u, i) for i, u in enumerate(raw["uplinks"]))
    numbers: dict[str, Any] = {}
    for key, low, high in (
        ("interval", 0.1, 60),
        ("timeout", 0.05, 10),
        ("down_after", 1, 100),
        ("up_after", 1, 1000),
    ):
        value = raw.get(key, getattr(Config, key))
        if not isinstance(value, int | float) or not low <= value <= high:
            raise ConfigValueError(f"{key}: {value!r} is not between {low} and {high}")
        numbers[key] = value
    return Config(uplinks, local_main=bool(raw.get("local_main")), **numbers)


# --- apply ------------------------------------------------------------------------------------


def wanted_rules(config: Config, family: int) -> list[tuple[str, ...]]:
    """The policy rules of one family, as `ip rule add` arguments (priority first)."""
    uplinks = [u for u in config.uplinks if family in u.gateways]
    if not uplinks:
        return []
    rules: list[tuple[str, ...]] = [
        ("priority", str(PRIORITY_MAIN), "lookup", "main", "suppress_prefixlength", "0")
    ]
    for n, up in enumerate(uplinks):
        fwmark = f"0x{up.mark:x}/0x{MARK_MASK:x}"
        rules.append(
            ("priority", str(PRIORITY_MARK + n), "fwmark", fwmark, "lookup", str(up.table))
        )
        if family in up.networks:
            rules.append(
                ("priority", str(PRIORITY_FROM + n), "from", up.networks[family], "lookup",
                 str(up.table))
            )  # fmt: skip
    if config.local_main:
        rules.append(("priority", str(PRIORITY_LOCAL), "iif", "lo", "lookup", "main"))
    rules.append(("priority", str(PRIORITY_EGRESS), "lookup", str(EGRESS_TABLE)))
    return rules


def _rule_key(rule: dict[str, Any]) -> tuple[str, ...]:
    """`ip -j rule show`'s view of one rule in the form wanted_rules writes."""
    key = ["priority", str(rule.get("priority"))]
    if rule.get("fwmark"):
        key += ["fwmark", f"{rule['fwmark']}/{rule.get('fwmask', '0xffffffff')}"]
    if rule.get("src") not in (None, "all"):
        key += ["from", f"{rule['src']}/{rule.get('srclen')}"]
    if rule.get("iif"):
        key += ["iif", str(rule["iif"])]
    key += ["lookup", str(rule.get("table"))]
    if "suppress_prefixlen" in rule:
        key += ["suppress_prefixlength", str(rule["suppress_prefixlen"])]
    return tuple(key)


def current_rules(family: int) -> list[tuple[str, ...]]:
    out = run("ip", f"-{family}", "-j", "rule", "show").stdout
    rules = json.loads(out or "[]")
    return [_rule_key(r) for r in rules if int(r.get("priority", 0)) in PRIORITY_RANGE]


def _sync_rules(config: Config, family: int) -> list[str]:
    wanted, have = wanted_rules(config, family), current_rules(family)
    if sorted(wanted) == sorted(have):
        return []
    for rule in have:  # ours only: the priorities Kastro owns
        run("ip", f"-{family}", "rule", "del", "priority", rule[1], check=False)
    for rule in wanted:
        run("ip", f"-{family}", "rule", "add", *rule)
    return [f"IPv{family} policy rules ({len(wanted)})"]


def _route_args(up: Uplink, family: int, table: int) -> list[str]:
    return [f"-{family}", "route", "replace", "default", "via", up.gateways[family],
            "dev", up.interface, "table", str(table)]  # fmt: skip


def _default_of(family: int, table: int) -> str:
    proc = run("ip", f"-{family}", "-j", "route", "show", "default", "table", str(table),
               check=False)  # fmt: skip
    routes = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return " ".join(f"{r.get('gateway')}@{r.get('dev')}" for r in routes)


def _wanted_addresses(config: Config) -> list[list[str]]:
    """[port, address] of every uplink, sorted: what apply sets and remembers."""
    return sorted([u.interface, a] for u in config.uplinks for a in u.addresses)


def _apply_addresses(config: Config, previous: list[list[str]]) -> list[str]:
    changes = []
    wanted = {(iface, a) for iface, a in _wanted_addresses(config)}
    for iface, address in sorted(wanted):
        if address not in addresses_of(iface):
            extra = ["nodad"] if ":" in address else []
            run("ip", "addr", "replace", address, "dev", iface, *extra)
            changes.append(f"{iface} {address}")
    for iface, address in previous:
        if (iface, address) not in wanted:
            run("ip", "addr", "del", address, "dev", iface, check=False)
            changes.append(f"removed {iface} {address}")
    return changes


def needs_apply(config: Config) -> list[str]:
    """Why the host does not match its configuration (empty: it does)."""
    reasons = []
    for up in config.uplinks:
        missing = set(up.addresses) - addresses_of(up.interface)
        if missing:
            reasons.append(f"{up.interface} lacks {', '.join(sorted(missing))}")
        for family, gateway in up.gateways.items():
            if _default_of(family, up.table) != f"{gateway}@{up.interface}":
                reasons.append(f"table {up.table} has no IPv{family} route via {gateway}")
    for family in (4, 6):
        if sorted(wanted_rules(config, family)) != sorted(current_rules(family)):
            reasons.append(f"the IPv{family} policy rules differ")
    previous = json.loads(STATE.read_text()) if STATE.exists() else {}
    if previous.get("addresses", []) != _wanted_addresses(config):
        reasons.append("the addresses changed since the last apply")
    return reasons


def apply(config: Config) -> list[str]:
    """Addresses, each uplink's table, the policy rules; the egress table is set when empty
    (the watcher owns it from then on). Running it again changes nothing."""
    previous = json.loads(STATE.read_text()) if STATE.exists() else {}
    changes = _apply_addresses(config, previous.get("addresses", []))
    for up in config.uplinks:
        for family, gateway in up.gateways.items():
            if _default_of(family, up.table) != f"{gateway}@{up.interface}":
                run("ip", *_route_args(up, family, up.table))
                changes.append(f"table {up.table} IPv{family} via {gateway}")
    for family in (4, 6):
        first = next((u for u in config.uplinks if family in u.gateways), None)
        if first and not _default_of(family, EGRESS_TABLE):
            run("ip", *_route_args(first, family, EGRESS_TABLE))
            changes.append(f"IPv{family} egress via {first.name}")
        changes += _sync_rules(config, family)
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps({"addresses": _wanted_addresses(config)}), encoding="utf-8")
    return changes


# --- health and failover ----------------------------------------------------------------------


@dataclass
class Health:
    """One uplink's state from its probe rounds: down after `down_after` failed rounds in a
    row, up after `up_after` answered rounds in a row (hold-down against flapping)."""

    down_after: float
    up_after: float
    up: bool = True  # until proven otherwise: the preferred uplink is used from the start
    streak: int = 0  # rounds in a row that disagree with `up`
    changes: int = 0

    def record(self, answered: bool) -> bool:
        """Count one round; True when the state flips."""
        if answered == self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= (self.up_after if answered else self.down_after):
            self.up, self.streak = answered, 0
            self.changes += 1
            return True
        return False


def choose(uplinks: tuple[Uplink, ...], health: dict[str, Health], current: str) -> str:
    """The first uplink in the model's order that is up; if none is, the one in use."""
    return next((u.name for u in uplinks if health[u.name].up), current)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"kastro-uplinks"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


def parse_echo_reply(packet: bytes) -> tuple[str, int, int] | None:
    """(source, identifier, sequence) of an IPv4 ICMP echo reply, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    start = (packet[0] & 0x0F) * 4
    if len(packet) < start + 8 or packet[start] != 0:
        return None
    ident, seq = struct.unpack("!HH", packet[start + 4 : start + 8])
    return socket.inet_ntoa(packet[12:16]), ident, seq


@dataclass
class Prober:
    """ICMP echo through one uplink: the socket is bound to the uplink's address (so the
    policy rules send it through that ISP) and to its port."""

    uplink: Uplink
    ident: int
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.uplink.interface.encode()
        )
        own = next((a for a in self.uplink.addresses if ":" not in a), "")
        if own:
            self.sock.bind((own.split("/")[0], 0))
        self.sock.setblocking(False)

    def send(self, seq: int) -> None:
        for target in self.uplink.probe:
            # No route, or the port is down: no answer, counted as such.
            with contextlib.suppress(OSError):
                self.sock.sendto(echo_request(self.ident, seq), (target, 0))

    def answered(self, seq: int) -> bool:
        while True:
            try:
                packet = self.sock.recv(2048)
            except BlockingIOError:
                return False
            reply = parse_echo_reply(packet)
            if reply and reply[1:] == (self.ident, seq) and reply[0] in self.uplink.probe:
                return True


def probe_round(probers: list[Prober], seq: int, timeout: float) -> dict[str, bool]:
    """One echo to every probe of every uplink; which uplinks had an answer in `timeout`."""
    for prober in probers:
        prober.send(seq)
    result = {p.uplink.name: False for p in probers}
    deadline = time.monotonic() + timeout
    while not all(result.values()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(
            [p.sock for p in probers if not result[p.uplink.name]], [], [], left
        )
        for prober in probers:
            if prober.sock in ready and prober.answered(seq):
                result[prober.uplink.name] = True
    return result


def point_egress(config: Config, name: str) -> None:
    up = next(u for u in config.uplinks if u.name == name)
    for family in up.gateways:
        run("ip", *_route_args(up, family, EGRESS_TABLE))


def forget_connections(up: Uplink) -> None:
    """The connections that were using a silent uplink are dead (their NAT address is that
    ISP's): forgetting them lets their next packet start over through the uplink in use,
    instead of staying marked for the silent one."""
    run("conntrack", "-D", "--mark", f"{up.mark}/{MARK_MASK}", check=False)


def write_metrics(config: Config, health: dict[str, Health], active: str, switches: int) -> None:
    lines = [
        "# HELP kastro_uplink_up Whether the uplink's probes answer (1) or it is down (0).",
        "# TYPE kastro_uplink_up gauge",
        *(
            f'kastro_uplink_up{{uplink="{u.name}"}} {int(health[u.name].up)}'
            for u in config.uplinks
        ),
        "# HELP kastro_uplink_active Whether the uplink carries the municipality's traffic.",
        "# TYPE kastro_uplink_active gauge",
        *(
            f'kastro_uplink_active{{uplink="{u.name}"}} {int(u.name == active)}'
            for u in config.uplinks
        ),
        "# HELP kastro_uplink_switches_total Times the traffic moved to another uplink.",
        "# TYPE kastro_uplink_switches_total counter",
        f"kastro_uplink_switches_total {switches}",
        "",
    ]
    textfile.write_text(METRICS, "\n".join(lines))


def watch(config: Config, rounds: int | None = None) -> None:
    """Probe, decide, point table 100; forever (or `rounds` rounds, for tests)."""
    probed = [u for u in config.uplinks if u.probe]
    probers = [Prober(u, ((os.getpid() & 0xFF) << 8) | n) for n, u in enumerate(probed)]
    health = {u.name: Health(config.down_after, config.up_after) for u in config.uplinks}
    active = config.uplinks[0].name
    point_egress(config, active)
    switches, seq = 0, 0
    write_metrics(config, health, active, switches)
    while rounds is None or seq < rounds:
        seq = (seq + 1) & 0xFFFF
        started = time.monotonic()
        answers = probe_round(probers, seq, config.timeout) if probers else {}
        for name, answered in answers.items():
            if health[name].record(answered):
                state = "απαντά ξανά / answers again" if answered else "σιωπά / went silent"
                print(f"kastro-uplinks: {name} {state}", flush=True)
                if not answered:
                    forget_connections(next(u for u in config.uplinks if u.name == name))
        chosen = choose(config.uplinks, health, active)
        if chosen != active:
            point_egress(config, chosen)
            print(f"kastro-uplinks: η κίνηση περνά από {chosen} / traffic moves to {chosen} "
                  f"(from {active})", flush=True)  # fmt: skip
            active, switches = chosen, switches + 1
        write_metrics(config, health, active, switches)
        time.sleep(max(0.0, config.interval - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-uplinks", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("apply", help="addresses, routing tables and policy rules")
    sub.add_parser("needs-apply", help="whether the host differs from its configuration (JSON)")
    sub.add_parser("watch", help="probe the uplinks and move the traffic to a healthy one")
    args = parser.parse_args(argv)
    try:
        config = parse_config(json.loads(args.config.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"kastro-uplinks: cannot read {args.config}: {exc}", file=sys.stderr)
        return 2
    except ConfigValueError as exc:
        print(f"kastro-uplinks: {args.config}: {exc}; nothing was changed", file=sys.stderr)
        return 2
    if args.command == "needs-apply":
        print(convention.needs_apply_json(needs_apply(config)))
        return 0
    if args.command == "apply":
        changes = apply(config)
        print("kastro-uplinks: " + ("; ".join(changes) if changes else "nothing to change"))
        return 0
    watch(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
