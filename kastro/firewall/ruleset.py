"""Compile the municipality's policy into one host's nftables ruleset.

The role's template lays the result out as `table inet kastro`; this module decides what goes
in it. It reads the same variables the roles see (kastro_plan, kastro_policy, kastro_services,
kastro_municipality, kastro_interfaces), which `kastro validate` has already checked, so it
only has to translate, not to judge the model again.

How a gateway decides (one building, one gateway):
- Zones are recognised by address, not by interface: traffic from another building arrives on
  a link interface, and the prerouting anti-spoofing chain guarantees that whatever arrives on a
  zone interface carries that zone's addresses.
- A gateway checks every forwarded packet whose source or destination is local to it (one of
  its building's zones, the internet if it holds an uplink, the teleworker pools if it
  terminates the VPN). Packets passing between two links are in transit: the gateways at both
  ends have checked them already.
- One chain per zone pair the policy names; the dispatch rules in `forward` jump to it by
  source and destination prefix. Each policy rule gets a named counter per zone pair.
A server only filters what reaches it (`input`), from the sources the policy names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import netaddr

from kastro.inventory import infra
from kastro.inventory.model import Port, Schedule, parse_port, parse_schedule
from kastro.inventory.plan import (
    BACKUP_SSH_PORT,
    EVENTS_PORT,
    MONITORING_WEB_PORTS,
    host_addresses,
    monitoring_addresses,
)
from kastro.inventory.probes import Probe, service_probes
from kastro.inventory.published import Forward, forwards
from kastro.inventory.sides import (
    INTERNET_ENDPOINT,
    Endpoint,
    as_list,
    prefixes_of,
    resolve_side,
)
from kastro.inventory.validate import TELEWORKER_PREFIX, interface_problems
from kastro.nft import nft_set

# ICMP the network cannot work without: errors (path MTU discovery needs "too big"/"frag
# needed"), and IPv6 neighbour discovery. Echo is allowed too, but rate limited.
ICMP_ERRORS_V4 = "destination-unreachable, time-exceeded, parameter-problem"
ICMP_ERRORS_V6 = "destination-unreachable, packet-too-big, time-exceeded, parameter-problem"
ICMP_NDP_V6 = (
    "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, "
    "mld-listener-query, mld-listener-report, mld2-listener-report"
)
NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
# What a chain, set or counter name may be (nft identifiers; at most 256 bytes).
NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,250}")
# Extra protocols an input rule may name as proto/NAME (routing and redundancy protocols).
EXTRA_PROTOCOLS = ("ospf", "vrrp", "gre", "esp", "ah")


class FirewallConfigError(ValueError):
    """A role variable the compiler cannot translate; the message names the variable."""


@dataclass
class Chain:
    name: str
    comment: str
    rules: list[str] = field(default_factory=list)


@dataclass
class Ruleset:
    """Everything the template needs to write `table inet kastro` for one host."""

    host: str
    kind: str  # gateway or host
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: dict[str, str] = field(default_factory=dict)  # name -> comment
    prerouting: list[str] = field(default_factory=list)
    input: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    postrouting: list[str] = field(default_factory=list)
    dnat: list[str] = field(default_factory=list)  # prerouting, type nat: published services
    # Two or more uplinks: connections marked by the uplink they came in by or left through
    # (kastro-uplinks routes each mark through its uplink), at mangle priority.
    mark_prerouting: list[str] = field(default_factory=list)
    mark_postrouting: list[str] = field(default_factory=list)
    meters: dict[str, str] = field(default_factory=dict)  # dynamic set name -> element type
    chains: list[Chain] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    ssh_guard_block: str = "1h"  # how long a brute-forcing source stays in ssh_guarded_*
    _counter_meaning: dict[str, str] = field(default_factory=dict, repr=False)

    def counter(self, name: str, comment: str) -> str:
        """A named counter; one name always means one thing (the same comment), else the
        compiler stops: nft would merge the two and one rule would count or hide another."""
        if not NFT_NAME.fullmatch(name):
            raise FirewallConfigError(f"counter name '{name}' is not a safe nftables name")
        first = self._counter_meaning.setdefault(name, comment)
        if first != comment:
            raise FirewallConfigError(
                f"two counters would be named '{name}' ('{first}' and '{comment}'); rename "
                "one of the zones, links or firewall_input_allow entries they come from"
            )
        self.counters.setdefault(name, comment[:120])
        return f"counter name {name}"

    def add_chain(self, chain: Chain) -> None:
        """Chains are unique by name: nft merges two blocks of one name into one chain, so a
        rule meant for one pair of zones would then accept the other's traffic."""
        if not NFT_NAME.fullmatch(chain.name):
            raise FirewallConfigError(f"chain name '{chain.name}' is not a safe nftables name")
        if any(c.name == chain.name for c in self.chains):
            raise FirewallConfigError(
                f"two chains would be named '{chain.name}'; rename a zone or teleworker group"
            )
        self.chains.append(chain)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "kind": self.kind,
            "sets": self.sets,
            "counters": self.counters,
            "prerouting": self.prerouting,
            "input": self.input,
            "forward": self.forward,
            "output": self.output,
            "postrouting": self.postrouting,
            "dnat": self.dnat,
            "mark_prerouting": self.mark_prerouting,
            "mark_postrouting": self.mark_postrouting,
            "meters": self.meters,
            "chains": [
                {"name": c.name, "comment": c.comment, "rules": c.rules} for c in self.chains
            ],
            "summary": self.summary,
            "ssh_guard_block": self.ssh_guard_block,
        }


@dataclass(frozen=True)
class Settings:
    """The role variables that shape the ruleset (see roles/firewall/meta/argument_specs.yml)."""

    management_interface: str = ""
    management_networks: tuple[str, ...] = ()
    management_ports: tuple[int, ...] = (22,)
    allowlist: tuple[str, ...] = ()
    log_rate: str = "10/minute"
    echo_rate: str = "20/second"
    nat: bool = True
    nat_ipv6: bool = True
    snat_ipv4: str = ""
    vpn_interfaces: tuple[str, ...] = ()
    # Routed link interfaces the links role creates (a WireGuard tunnel per encrypted link),
    # by link name; they count as links next to kastro_interfaces.links.
    link_interfaces: Mapping[str, str] = field(default_factory=dict)
    input_allow: tuple[Mapping[str, Any], ...] = ()
    # Ports of the exporters on this host; only the monitoring hosts may reach them.
    metrics_ports: tuple[int, ...] = ()
    # UDP ports where teleworkers' WireGuard handshakes arrive (counted in and answered out).
    handshake_ports: tuple[int, ...] = ()
    # SSH brute force: new connections to the management ports from a source outside the
    # allowlist beyond this rate put the source in ssh_guarded_* for `ssh_guard_block`.
    ssh_guard_rate: str = "5/minute"
    ssh_guard_burst: int = 5
    ssh_guard_block: str = "1h"
    # The gateway's uplinks (port, connection mark), the first on kastro_interfaces.wan:
    # from the desired state (kastro.inventory.published.gateway_uplinks).
    uplinks: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_vars(cls, raw: Mapping[str, Any]) -> Settings:
        def texts(key: str) -> tuple[str, ...]:
            return tuple(str(v) for v in raw.get(key) or ())

        def numbers(key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
            return tuple(int(v) for v in raw.get(key) or default)

        def text(key: str, default: str = "") -> str:
            return str(raw.get(key) or default)

        return cls(
            ssh_guard_rate=checked("ssh_guard_rate", text("ssh_guard_rate", "5/minute"), RATE),
            ssh_guard_burst=_whole(raw.get("ssh_guard_burst", 5), "ssh_guard_burst", 1, 1000),
            ssh_guard_block=checked("ssh_guard_block", text("ssh_guard_block", "1h"), DURATION),
            management_interface=text("management_interface"),
            management_networks=texts("management_networks"),
            management_ports=numbers("management_ports", (22,)),
            allowlist=texts("allowlist"),
            log_rate=checked("log_rate", text("log_rate", "10/minute"), RATE),
            echo_rate=checked("echo_rate", text("echo_rate", "20/second"), RATE),
            nat=bool(raw.get("nat", True)),
            nat_ipv6=bool(raw.get("nat_ipv6", True)),
            snat_ipv4=text("snat_ipv4"),
            vpn_interfaces=texts("vpn_interfaces"),
            link_interfaces={str(k): str(v) for k, v in (raw.get("link_interfaces") or {}).items()},
            input_allow=tuple(raw.get("input_allow") or ()),
            metrics_ports=numbers("metrics_ports"),
            handshake_ports=numbers("handshake_ports"),
            uplinks=tuple(_uplink_port(u) for u in raw.get("uplinks") or ()),
        )


def _uplink_port(raw: Mapping[str, Any]) -> tuple[str, int]:
    """(port, mark) of one uplink, checked before either reaches the ruleset."""
    iface, mark = str(raw.get("interface") or ""), raw.get("mark")
    if not UPLINK_IFACE.fullmatch(iface) or not isinstance(mark, int) or not 0 < mark < 0x10000:
        raise FirewallConfigError(
            f"uplinks: {iface!r} (mark {mark!r}) is not an interface name and a mark; "
            "run 'kastro validate' and set the uplinks in kastro_municipality.uplinks"
        )
    return iface, mark


UPLINK_IFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


# Values spliced into the ruleset text: nothing but these shapes passes (a newline or a
# quote in a rate would otherwise add rules of its own that `nft -c` accepts).
RATE = re.compile(r"[1-9][0-9]{0,5}/(second|minute|hour|day)")
DURATION = re.compile(r"[1-9][0-9]{0,4}(s|m|h|d)")


def checked(name: str, value: str, shape: re.Pattern[str]) -> str:
    if not shape.fullmatch(value):
        example, units = ("10/minute", "/second, /minute, /hour or /day")
        if shape is DURATION:
            example, units = ("1h", "s, m, h or d")
        raise FirewallConfigError(
            f"firewall_{name}: {value!r} is not of the form {example} (a number, then {units})"
        )
    return value


def _whole(value: Any, name: str, low: int, high: int) -> int:
    """A whole number in range (Ansible may hand over its text: digits only then)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FirewallConfigError(f"firewall_{name}: {value!r} is not a whole number {low}-{high}")
    return value


@dataclass(frozen=True)
class GatewayPorts:
    """A gateway's interfaces by what they connect (kastro_interfaces plus the link tunnels)."""

    building: str
    zones: dict[str, str]  # zone name -> interface
    links: dict[str, str]  # link name (NAME-tunnel for an encrypted link) -> interface
    wan: str
    vpn: list[str]
    uplinks: tuple[tuple[str, int], ...] = ()  # (port, connection mark); [0] is wan

    @property
    def uplink_ports(self) -> list[str]:
        return [iface for iface, _ in self.uplinks] or ([self.wan] if self.wan else [])


def _source_drops(iface: str, v4: Sequence[str], v6: Sequence[str], counter: str) -> list[str]:
    """Drop what arrives on `iface` from these prefixes (IPv4, then IPv6)."""
    rules = [f'iifname "{iface}" ip saddr {nft_set(v4)} {counter} drop'] if v4 else []
    if v6:
        rules.append(f'iifname "{iface}" ip6 saddr {nft_set(v6)} {counter} drop')
    return rules


def _split_families(networks: Iterable[str], what: str) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for text in networks:
        try:
            net = netaddr.IPNetwork(text)
        except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
            raise FirewallConfigError(
                f"{what}: '{text}' is not an address or network; write e.g. 10.20.3.96/27"
            ) from exc
        (v4 if net.version == 4 else v6).append(str(net.cidr) if net.prefixlen else str(net))
    return v4, v6


def merge_ports(spans: Iterable[str]) -> list[str]:
    """Port spans ("80", "1000-2000") merged so that none overlaps: nft refuses overlaps."""
    ranges = sorted((int(a), int(b or a)) for a, _, b in (span.partition("-") for span in spans))
    merged: list[list[int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [str(a) if a == b else f"{a}-{b}" for a, b in merged]


def _constant(matches: list[str]) -> Callable[[str], list[str]]:
    """The same matches for either address family."""
    return lambda _family: matches


def _probe_matches(probes: Iterable[Probe]) -> list[str]:
    """'tcp dport { 443, 8080 }' (and 'udp dport { 53 }') for these probes' ports."""
    ports: dict[str, set[int]] = {}
    for probe in probes:
        ports.setdefault(probe.protocol, set()).add(probe.port)
    return [
        f"{protocol} dport {nft_set([str(p) for p in sorted(numbers)])}"
        for protocol, numbers in sorted(ports.items())
    ]


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\\", "/") + '"'


def _backup_hosts(variables: Mapping[str, Any]) -> tuple[str, list[str]]:
    """kastro_backup's repository server and the hosts with datasets."""
    backup = variables.get("kastro_backup") or {}
    datasets = (backup.get("datasets") or {}).values()
    return str(backup.get("server") or ""), sorted(
        {str(d["host"]) for d in datasets if d.get("host")}
    )


def _first_clash(proto: str, span: str, taken: list[tuple[Port, str]]) -> tuple[int, str] | None:
    """The lowest port of `span` that one of the `taken` ports (and its owner's name) covers."""
    first, _, last = span.partition("-")
    low, high = int(first), int(last or first)
    clashes = [
        (max(low, port.first), name)
        for port, name in taken
        if port.protocol == proto and port.first <= high and low <= port.last
    ]
    return min(clashes, key=lambda clash: clash[0]) if clashes else None


def _published_ports(forward: Forward) -> list[str]:
    """'tcp dport { 80, 443 }' (and the UDP one) of a published service."""
    return [
        f"{proto} dport {nft_set(merge_ports(spans))}"
        for proto, spans in (("tcp", forward.tcp), ("udp", forward.udp))
        if spans
    ]


class Compiler:
    def __init__(self, host: str, variables: Mapping[str, Any], settings: Settings) -> None:
        self.host = host
        self.plan: Mapping[str, Any] = variables.get("kastro_plan") or {}
        self.policy: list[Mapping[str, Any]] = list(variables.get("kastro_policy") or [])
        self.services: Mapping[str, Any] = variables.get("kastro_services") or {}
        self.buildings: Mapping[str, Any] = variables.get("kastro_buildings") or {}
        municipality = variables.get("kastro_municipality") or {}
        self.municipality: Mapping[str, Any] = municipality
        self.supernet_v4, self.supernet_v6 = _split_families(
            municipality.get("supernets") or (), "kastro_municipality.supernets"
        )
        self.interfaces: Mapping[str, Any] = variables.get("kastro_interfaces") or {}
        self.monitoring_hosts = [str(h) for h in municipality.get("monitoring_hosts") or ()]
        self.monitoring = monitoring_addresses(dict(self.plan), self.monitoring_hosts)
        self.collector = str(municipality.get("event_collector") or "")
        self.backup_server, self.backup_clients = _backup_hosts(variables)
        # (IPv4, IPv6) each, split once: every managed host's sources, the apt cache's address.
        self.managed = _split_families(infra.managed_addresses(variables), "managed hosts")
        self.update_cache = infra.update_cache(variables)
        self.cache = _split_families(
            infra.cache_addresses(variables), "kastro_municipality.updates.cache"
        )
        self.updates_direct = infra.updates_direct(variables)
        self.time_sources = infra.time_sources(variables)
        self.forwards = forwards(variables)
        self.probes = service_probes(variables) if self.monitoring else []
        self.settings = settings
        planned = (self.plan.get("hosts") or {}).get(host)
        if planned is None:
            raise FirewallConfigError(
                f"host '{host}' is not in kastro_plan.hosts; add it to kastro_buildings and run "
                "'kastro apply' again"
            )
        self.me: Mapping[str, Any] = planned
        self.check_interfaces()
        self.zones: Mapping[str, Mapping[str, Any]] = self.plan.get("zones") or {}
        self.pools: Mapping[str, Mapping[str, Any]] = self.plan.get("vpn_pools") or {}
        self.out = Ruleset(host, "gateway" if planned.get("role") == "gateway" else "host")

    def check_interfaces(self) -> None:
        """kastro_interfaces against the plan: every problem at once, before anything else."""
        building = str(self.me.get("building"))
        zones = self.plan.get("zones") or {}
        links = self.plan.get("links") or {}
        problems = interface_problems(
            str(self.me.get("role")),
            {k.split(".", 1)[1] for k, z in zones.items() if z.get("building") == building},
            {
                n
                for n, link in links.items()
                if building in (link.get("ends") or {}) and link.get("medium") != "internet"
            },
            self.interfaces,
        )
        text = "; ".join(f"kastro_interfaces.{path}: {msg} ({fix})" for path, msg, fix in problems)
        if text:
            raise FirewallConfigError(text)

    # --- endpoints ---------------------------------------------------------------------

    def zone_endpoint(self, key: str) -> Endpoint:
        return Endpoint(key, *prefixes_of(self.zones[key]))

    def resolve(self, name: str) -> list[Endpoint]:
        return resolve_side(self.plan, name)

    def ports(self, service_names: Iterable[str]) -> list[tuple[str, str]]:
        """(protocol, port expression) pairs; ("any", "") for the service 'any'."""
        out: list[tuple[str, str]] = []
        for name in service_names:
            if name == "any":
                return [("any", "")]
            service = self.services.get(name) or {}
            for text in service.get("ports") or ():
                port, problem = parse_port(text)
                if port is None:
                    raise FirewallConfigError(f"kastro_services.{name}.ports: {problem}")
                out.append((port.protocol, port.span))
        return out

    # --- building blocks ---------------------------------------------------------------

    def match(self, direction: str, end: Endpoint, family: int) -> str | None:
        """The address match for one side, or None when the side has no such family."""
        field_ = f"{'ip' if family == 4 else 'ip6'} {direction}"
        if end.internet:
            supernet = self.supernet_v4 if family == 4 else self.supernet_v6
            return f"{field_} != {nft_set(supernet)}" if supernet else ""
        nets = end.ipv4 if family == 4 else end.ipv6
        return f"{field_} {nft_set(nets)}" if nets else None

    def when(self, index: int, rule: Mapping[str, Any]) -> str:
        """A scheduled rule's time match (nft turns the hosts' local time into UTC when it
        loads the table; kastro-firewall clock reloads it when the offset changes)."""
        schedule, problem, _ = parse_schedule(rule.get("schedule"))
        if problem:
            raise FirewallConfigError(f"kastro_policy[{index - 1}].schedule: {problem}")
        return schedule_match(schedule)

    def port_rules(
        self, ports: list[tuple[str, str]], verdict: str
    ) -> list[tuple[int | None, str]]:
        """(address family the rule belongs to, None for both; rule) for these ports."""
        tcp = [p for proto, p in ports if proto == "tcp"]
        udp = [p for proto, p in ports if proto == "udp"]
        rules: list[tuple[int | None, str]] = []
        if any(proto == "any" for proto, _ in ports):
            return [(None, verdict)]
        if tcp:
            rules.append((None, f"tcp dport {nft_set(merge_ports(tcp))} {verdict}"))
        if udp:
            rules.append((None, f"udp dport {nft_set(merge_ports(udp))} {verdict}"))
        if any(proto == "icmp" for proto, _ in ports):
            rules.append((4, f"icmp type echo-request {verdict}"))
            rules.append((6, f"icmpv6 type echo-request {verdict}"))
        return rules

    def common_head(self, chain: list[str], hook: str, transit: str = "") -> None:
        """What every input/forward chain starts with: management, blocklists, conntrack."""
        s = self.settings
        if hook == "input":
            chain.append('iif "lo" accept')
            ports = nft_set([str(p) for p in dict.fromkeys(s.management_ports)])
            if s.management_interface:
                chain.append(
                    f'iifname "{s.management_interface}" tcp dport {ports} '
                    f"{self.out.counter('management_in', 'management interface')} accept"
                    ' comment "management first: never locked out"'
                )
            chain.append(
                f"ip saddr @management_v4 tcp dport {ports} "
                f"{self.out.counter('management_in', 'management interface')} accept"
            )
            chain.append(
                f"ip6 saddr @management_v6 tcp dport {ports} "
                f"{self.out.counter('management_in', 'management interface')} accept"
            )
        counter = self.out.counter(f"blocklist_{hook}", f"blocked by the SOC ({hook})")
        chain.append(f"ip saddr @blocklist_v4 ip saddr != @allowlist_v4 {counter} drop")
        chain.append(f"ip6 saddr @blocklist_v6 ip6 saddr != @allowlist_v6 {counter} drop")
        if hook == "input":
            counter = self.out.counter("ssh_guarded", "blocked for SSH brute force")
            chain.append(f"ip saddr @ssh_guarded_v4 ip saddr != @allowlist_v4 {counter} drop")
            chain.append(f"ip6 saddr @ssh_guarded_v6 ip6 saddr != @allowlist_v6 {counter} drop")
        if hook == "forward":
            chain.append(f"ip daddr @blocklist_v4 ip daddr != @allowlist_v4 {counter} drop")
            chain.append(f"ip6 daddr @blocklist_v6 ip6 daddr != @allowlist_v6 {counter} drop")
        self.isolation(chain, hook)
        if transit:
            # Before conntrack: in a ring, the two directions of a flow can pass different
            # transit gateways (equal-cost paths), so a transit gateway may see only the
            # replies, which conntrack would call invalid.
            counter = self.out.counter("transit", "between two links: checked at both ends")
            chain.append(f"iifname {transit} oifname {transit} {counter} accept")
        chain.append("ct state established,related accept")
        if hook == "input":
            # Replies to `ping ff02::1%IFACE` (the admin's "who is on this segment"): conntrack
            # cannot tie them to a multicast request and calls them invalid. Link-local only,
            # so they never come from beyond the segment.
            chain.append("icmpv6 type echo-reply ip6 saddr fe80::/10 ip6 daddr fe80::/10 accept")
        chain.append(
            f"ct state invalid {self.out.counter(f'invalid_{hook}', 'invalid state')} drop"
        )
        chain.append(f"icmp type {{ {ICMP_ERRORS_V4} }} accept")
        chain.append(f"icmpv6 type {{ {ICMP_ERRORS_V6} }} accept")
        if hook == "input":
            chain.append(f"icmpv6 type {{ {ICMP_NDP_V6} }} ip6 hoplimit 255 accept")
            chain.append(f"icmpv6 type {{ {ICMP_NDP_V6} }} ip6 saddr fe80::/10 accept")
            chain.append(f"icmp type echo-request limit rate {s.echo_rate} accept")
            chain.append(f"icmpv6 type echo-request limit rate {s.echo_rate} accept")
            self.ssh_guard(chain, ports)

    def ssh_guard(self, chain: list[str], ports: str) -> None:
        """SSH brute force, in the kernel: a source outside the allowlist opening new
        connections to the management ports faster than the rate goes into ssh_guarded_* and
        is dropped (the rule above, every port) until the block times out. Management and SOC
        addresses were accepted or excluded before this; nothing from them is counted."""
        s = self.settings
        counter = self.out.counter("ssh_guard", "SSH brute force: source blocked")
        for ip, family in (("ip", "v4"), ("ip6", "v6")):
            chain.append(
                f"tcp dport {ports} ct state new {ip} saddr != @allowlist_{family} "
                f"update @ssh_meter_{family} {{ {ip} saddr limit rate over {s.ssh_guard_rate} "
                f"burst {s.ssh_guard_burst} packets }} add @ssh_guarded_{family} {{ {ip} saddr }} "
                f"{counter} drop"
            )

    def isolation(self, chain: list[str], hook: str) -> None:
        """An isolated address (kastro respond isolate) talks to the allowlist only (the
        management networks, the SOC), in both directions, whichever host it is: at its
        gateway (forward), on the gateway itself (input, output) and on the host when the host
        is Kastro's (its own address in its own set). Before conntrack: open sessions end too.
        The management rule above still accepts management SSH first."""
        counter = self.out.counter(f"isolated_{hook}", f"isolated by the SOC ({hook})")
        for ip, family in (("ip", "v4"), ("ip6", "v6")):
            chain.append(
                f"{ip} saddr @isolated_{family} {ip} daddr != @allowlist_{family} {counter} drop"
            )
            chain.append(
                f"{ip} daddr @isolated_{family} {ip} saddr != @allowlist_{family} {counter} drop"
            )

    def output_isolation(self) -> None:
        """The host's own packets (output) to or from an isolated address; loopback stays."""
        self.out.output.append('oif "lo" accept')
        self.isolation(self.out.output, "output")

    def drop_tail(self, chain: list[str], hook: str, interfaces: Mapping[str, str]) -> None:
        """Rate-limited logging and a counter per source interface, then the default drop."""
        rate = self.settings.log_rate
        for label, iface in interfaces.items():
            # Counter names carry the source's kind (zone_, link_); the log says it plainly.
            shown = label.removeprefix("zone_").replace("link_", "link-", 1)
            prefix = f"kastro {hook} drop {shown}: "[:60]
            chain.append(
                f'iifname "{iface}" limit rate {rate} log prefix {_quote(prefix)} level info'
            )
            counter = self.out.counter(f"drop_{hook}_{label}", f"dropped {hook} from {shown}")
            chain.append(f'iifname "{iface}" {counter} drop')
        chain.append(f"limit rate {rate} log prefix {_quote(f'kastro {hook} drop: ')} level info")
        chain.append(f"{self.out.counter(f'drop_{hook}', f'dropped {hook}')} drop")

    # --- the two kinds of host -----------------------------------------------------------

    def local_endpoints(self) -> list[Endpoint]:
        building = self.me.get("building")
        local = [
            self.zone_endpoint(k)
            for k in sorted(self.zones)
            if self.zones[k]["building"] == building
        ]
        if self.interfaces.get("wan"):
            local.append(INTERNET_ENDPOINT)
        if self.terminates_vpn():
            local += [
                Endpoint(f"{TELEWORKER_PREFIX}{g}", *prefixes_of(p))
                for g, p in sorted(self.pools.items())
            ]
        return local

    def terminates_vpn(self) -> bool:
        if self.interfaces.get("vpn") or self.settings.vpn_interfaces:
            return True
        building = self.buildings.get(str(self.me.get("building"))) or {}
        return bool(building.get("city_hall"))

    def policy_pairs(
        self,
    ) -> tuple[dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]], dict[str, Endpoint]]:
        """(source key, destination key) -> the policy rules (1-based index, rule) naming it,
        and the endpoints those keys stand for."""
        pairs: dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]] = {}
        endpoints: dict[str, Endpoint] = {}
        for index, rule in enumerate(self.policy, start=1):
            for src_name in as_list(rule.get("from")):
                for dst_name in as_list(rule.get("to")):
                    for src in self.resolve(src_name):
                        for dst in self.resolve(dst_name):
                            if src.key == dst.key:
                                continue  # inside one zone: never crosses the gateway
                            endpoints[src.key] = src
                            endpoints[dst.key] = dst
                            pairs.setdefault((src.key, dst.key), []).append((index, rule))
        return pairs, endpoints

    def gateway(self) -> None:
        ports = self.gateway_ports()
        self.antispoof_zones(ports)
        self.antispoof_wan(ports)
        self.antispoof_links(ports)
        self.antispoof_vpn(ports)
        out = self.out
        self.count_handshakes()
        self.common_head(out.input, "input")
        self.metrics_allow(out.input)
        self.time_allow(out.input)
        self.input_allow(out.input)
        links = sorted(set(ports.links.values()))
        transit = nft_set([f'"{i}"' for i in links]) if len(ports.links) >= 2 else ""
        self.common_head(out.forward, "forward", transit)
        self.published_forward(ports)
        self.metrics_allow(out.forward, "forward")
        self.monitoring_web_allow(out.forward, "forward")
        self.events_allow(out.forward, "forward")
        self.backup_allow(out.forward, "forward")
        self.probes_allow(out.forward, "forward")
        self.updates_allow(out.forward, "forward")
        self.time_allow(out.forward, "forward")
        self.pair_chains({e.key for e in self.local_endpoints()})
        self.drop_tails(ports)
        self.hairpin(ports)
        self.nat(ports)
        self.uplink_marks(ports)

    def count_handshakes(self) -> None:
        """Count WireGuard handshake initiations arriving and responses leaving (message types
        1 and 2, 148 and 92 bytes: the first byte of the UDP payload). WireGuard drops an
        initiation from a key it does not know without a word; initiations minus responses is
        how a revoked device that keeps trying shows (KastroTeleworkHandshakesUnanswered).
        Counted before conntrack: a peer that is never answered stays in state new."""
        if not self.settings.handshake_ports:
            return
        ports = nft_set([str(p) for p in self.settings.handshake_ports])
        initiations = self.out.counter("telework_handshakes_in", "WireGuard handshake initiations")
        responses = self.out.counter("telework_handshakes_out", "WireGuard handshake responses")
        self.out.input.append(f"udp dport {ports} udp length 156 @th,64,32 0x1000000 {initiations}")
        self.out.output.append(f"udp sport {ports} udp length 100 @th,64,32 0x2000000 {responses}")

    def gateway_ports(self) -> GatewayPorts:
        """The gateway's interfaces by what they connect (check_interfaces has checked them
        against the plan already)."""
        building = str(self.me.get("building"))
        zones: dict[str, str] = dict(self.interfaces.get("zones") or {})
        links: dict[str, str] = dict(self.interfaces.get("links") or {})
        # An encrypted link's traffic arrives on its tunnel; the underlay only carries WireGuard.
        links.update({f"{n}-tunnel": i for n, i in self.settings.link_interfaces.items()})
        vpn = [*as_list(self.interfaces.get("vpn")), *self.settings.vpn_interfaces]
        wan = str(self.interfaces.get("wan") or "")
        return GatewayPorts(building, zones, links, wan, vpn, self.settings.uplinks if wan else ())

    def antispoof_zones(self, ports: GatewayPorts) -> None:
        """Before conntrack: a zone's packets carry that zone's addresses."""
        for zone_name, iface in sorted(ports.zones.items()):
            key = f"{ports.building}.{zone_name}"
            v4, v6 = prefixes_of(self.zones[key])
            counter = self.out.counter(f"spoofed_{zone_name}", f"spoofed source on zone {key}")
            allowed_v4 = ", ".join([*v4, "0.0.0.0"])  # noqa: S104  (DHCP clients have no address yet)
            # A zone without IPv6 prefix still has link-local neighbours.
            allowed_v6 = ", ".join([*v6, "fe80::/10", "::"])
            self.out.prerouting += [
                f'iifname "{iface}" ip saddr != {{ {allowed_v4} }} {counter} drop',
                f'iifname "{iface}" ip6 saddr != {{ {allowed_v6} }} {counter} drop',
            ]

    def antispoof_wan(self, ports: GatewayPorts) -> None:
        """The internet never sends from the municipality's own addresses."""
        if not ports.uplink_ports:
            return
        counter = self.out.counter("spoofed_wan", "municipal source address from the internet")
        for iface in ports.uplink_ports:
            self.out.prerouting += _source_drops(iface, self.supernet_v4, self.supernet_v6, counter)

    def antispoof_links(self, ports: GatewayPorts) -> None:
        """This building's zones live behind its zone interfaces: on a link, such a source is
        spoofed (or a loop), whichever building sent it."""
        local = [prefixes_of(self.zones[f"{ports.building}.{z}"]) for z in sorted(ports.zones)]
        local_v4 = [n for v4, _ in local for n in v4]
        local_v6 = [n for _, v6 in local for n in v6]
        for link_name, iface in sorted(ports.links.items()):
            counter = self.out.counter(
                f"spoofed_link_{link_name}", f"own zone's source on link {link_name}"
            )
            self.out.prerouting += _source_drops(iface, local_v4, local_v6, counter)

    def antispoof_vpn(self, ports: GatewayPorts) -> None:
        """Teleworkers send from their group's pool only."""
        pools_v4 = [n for _, p in sorted(self.pools.items()) for n in prefixes_of(p)[0]]
        pools_v6 = [n for _, p in sorted(self.pools.items()) for n in prefixes_of(p)[1]]
        for iface in ports.vpn:
            counter = self.out.counter("spoofed_vpn", "teleworker outside its pool")
            if pools_v4:
                self.out.prerouting.append(
                    f'iifname "{iface}" ip saddr != {nft_set(pools_v4)} {counter} drop'
                )
            if pools_v6:
                allowed = ", ".join([*pools_v6, "fe80::/10"])
                self.out.prerouting.append(
                    f'iifname "{iface}" ip6 saddr != {{ {allowed} }} {counter} drop'
                )

    def pair_chains(self, local: set[str]) -> None:
        """One chain per pair of sides touching this gateway (a side touches it when it is,
        or sits in, one of its zones, the internet or a teleworker pool), reached by prefix."""
        pairs, endpoints = self.policy_pairs()
        for (src_key, dst_key), rules in sorted(pairs.items()):
            src, dst = endpoints[src_key], endpoints[dst_key]
            touches = {src_key, dst_key, src.within, dst.within} & local
            if not touches or (src.internet and dst.internet):
                continue
            chain = self.pair_chain(src, dst, rules)
            self.out.add_chain(chain)
            for family in (4, 6):
                src_match = self.match("saddr", src, family)
                dst_match = self.match("daddr", dst, family)
                if src_match is not None and dst_match is not None:
                    matches = " ".join(m for m in (src_match, dst_match) if m)
                    self.out.forward.append(f"{matches} jump {chain.name}")
            self.out.summary.append(
                f"{src_key} -> {dst_key}: rules {', '.join(str(i) for i, _ in rules)}"
            )

    def pair_chain(
        self, src: Endpoint, dst: Endpoint, rules: list[tuple[int, Mapping[str, Any]]]
    ) -> Chain:
        chain = Chain(f"from_{src.label}_to_{dst.label}", f"{src.key} -> {dst.key}")
        for index, rule in rules:
            names = as_list(rule.get("services"))
            comment = str(rule.get("comment") or "")
            counter = self.out.counter(
                f"policy{index}_{src.label}_to_{dst.label}",
                f"policy rule {index}: {src.key} -> {dst.key} ({', '.join(names)})"
                + (f" - {comment}" if comment else ""),
            )
            when = self.when(index, rule)
            for _, rule_text in self.port_rules(self.ports(names), f"{counter} accept"):
                chain.rules.append(f"{when}{rule_text} comment {_quote(f'policy rule {index}')}")
        return chain

    def drop_tails(self, ports: GatewayPorts) -> None:
        # Prefixed so that no zone or link name can take another source's counter.
        sources = {f"zone_{z}": i for z, i in sorted(ports.zones.items())}
        sources.update({f"link_{n}": i for n, i in sorted(ports.links.items())})
        for n, iface in enumerate(ports.uplink_ports):
            sources["internet" if n == 0 else f"internet_{n + 1}"] = iface
        for iface in ports.vpn:
            sources["teleworkers"] = iface
        self.drop_tail(self.out.forward, "forward", sources)
        if self.settings.management_interface:
            sources["management"] = self.settings.management_interface
        self.drop_tail(self.out.input, "input", sources)

    def nat(self, ports: GatewayPorts) -> None:
        """Municipal addresses leave by an uplink with that uplink's address (each ISP routes
        back only its own)."""
        s = self.settings
        if not (ports.wan and s.nat):
            return
        for n, iface in enumerate(ports.uplink_ports):
            if self.supernet_v4:
                action = f"snat ip to {s.snat_ipv4}" if s.snat_ipv4 and n == 0 else "masquerade"
                self.out.postrouting.append(
                    f'oifname "{iface}" ip saddr {nft_set(self.supernet_v4)} {action}'
                )
            if self.supernet_v6 and s.nat_ipv6:
                self.out.postrouting.append(
                    f'oifname "{iface}" ip6 saddr {nft_set(self.supernet_v6)} masquerade'
                )

    def uplink_marks(self, ports: GatewayPorts) -> None:
        """Two or more uplinks: a connection is marked by the uplink it arrived by or first
        left through, and its packets carry the mark, so kastro-uplinks' rules keep it on that
        uplink (a published service answers through the ISP it was reached by; a connection
        keeps its NAT address) while other connections follow the failover."""
        if len(ports.uplinks) < 2:
            return
        for iface, mark in ports.uplinks:
            self.out.mark_prerouting.append(f'iifname "{iface}" ct state new ct mark set {mark:#x}')
            self.out.mark_postrouting.append(
                f'oifname "{iface}" ct state new ct mark set {mark:#x}'
            )
        marks = ", ".join(f"{mark:#x}" for _, mark in ports.uplinks)
        self.out.mark_prerouting.append(f"ct mark {{ {marks} }} meta mark set ct mark")

    # --- published services (kastro_published) ------------------------------------------

    def forwarded_here(self, ports: GatewayPorts) -> list[Forward]:
        """The published services this gateway translates: on an uplink of its building."""
        if not ports.wan:
            return []
        return [f for f in self.forwards if f.public and f.uplink_building == ports.building]

    def published_match(self, forward: Forward, dnat: bool) -> list[str]:
        """Address and port matches of one published service (after DNAT: the host's)."""
        ip = forward.nft
        head = f"{ip} daddr {forward.public if dnat else forward.target} "
        if forward.sources and not dnat:
            head += f"{ip} saddr {nft_set(list(forward.sources))} "
        return [f"{head}{ports} " for ports in _published_ports(forward)]

    def published_forward(self, ports: GatewayPorts) -> None:
        """DNAT of each public address and port to its host (whoever asks: the internet, or
        inside users on the public name, the hairpin), and the forward accept: on the uplink's
        gateway for what it translated (ct status dnat), on the host's own gateway for what
        another gateway translated, from the internet only (after the rate limit)."""
        here = self.forwarded_here(ports)
        self.check_published_ports(here)
        for f in here:
            counter = self.out.counter(f"published_{f.key}", f"published {f.name} (DNAT)")
            for match in self.published_match(f, dnat=True):
                self.out.dnat.append(f"{match}{counter} dnat {f.nft} to {f.target}")
            self.published_accept(f, "ct status dnat ")
        # Translated elsewhere (or an 'own' IPv6 address, never translated): the host's
        # gateway admits it, and so does every gateway it enters from the internet.
        elsewhere = [
            f
            for f in self.forwards
            if f not in here and (f.building == ports.building or (ports.wan and not f.public))
        ]
        for f in elsewhere:
            self.published_accept(f, "")
        self.out.summary += [
            f"internet -> {f.target}: published {f.name} ({f.public or 'own address'})"
            for f in self.forwards
            if f in here or f in elsewhere
        ]

    def published_accept(self, f: Forward, prefix: str) -> None:
        counter = self.out.counter(f"published_{f.key}_in", f"published {f.name} (forward)")
        for match in self.published_match(f, dnat=False):
            if f.rate:
                meter = f"published_rate_{f.key}"
                self.out.meters[meter] = "ipv4_addr" if f.family == 4 else "ipv6_addr"
                limited = self.out.counter(
                    f"published_{f.key}_limited", f"published {f.name}: over {f.rate}"
                )
                self.out.forward.append(
                    f"{prefix}{match}ct state new update @{meter} {{ {f.nft} saddr limit rate "
                    f"over {f.rate} }} {limited} drop"
                )
            self.out.forward.append(
                f"{prefix}{match}{counter} accept comment {_quote(f'published {f.name}')}"
            )

    def check_published_ports(self, here: list[Forward]) -> None:
        """A service published on the gateway's own uplink address must not take a port the
        gateway itself listens on there (the teleworkers' VPN): DNAT would steal it."""
        own = {
            str(netaddr.IPNetwork(str(up[f"ipv{v}"])).ip)
            for up in (self.municipality.get("uplinks") or ())
            for v in (4, 6)
            if up.get(f"ipv{v}")
        }
        taken = [
            (port, str(item.get("name") or ""))
            for item in self.settings.input_allow
            for port in (parse_port(text)[0] for text in as_list(item.get("ports")))
            if port is not None and port.protocol in ("tcp", "udp")
        ]
        for f in here:
            if f.public not in own:
                continue
            for proto, spans in (("tcp", f.tcp), ("udp", f.udp)):
                for span in spans:
                    clash = _first_clash(proto, span, taken)
                    if clash:
                        number, name = clash
                        raise FirewallConfigError(
                            f"kastro_published.{f.name}: {proto}/{number} on {f.public}, the "
                            f"gateway's own uplink address, is where {name} listens; publish "
                            "it on another public address of the uplink"
                        )

    def hairpin(self, ports: GatewayPorts) -> None:
        """A host that asks for a public address published by its own zone's neighbour: the
        reply would go straight back, from the private address, and be dropped. Such flows
        leave with the gateway's address instead (source NAT), so the reply returns here."""
        for f in self.forwarded_here(ports):
            zone = self.zones.get(f.zone) or {}
            prefix = zone.get("ipv4" if f.family == 4 else "ipv6")
            if prefix:
                ip = f.nft
                rule = f"ct status dnat {ip} saddr {prefix} {ip} daddr {f.target} masquerade"
                if rule not in self.out.postrouting:
                    self.out.postrouting.append(rule)

    def published_input(self, chain: list[str]) -> None:
        """On the host: its published services, from anyone allowed (the internet, and inside
        users who came by the public address)."""
        mine = {str(self.me.get("ipv4") or ""), str(self.me.get("ipv6") or "")} - {""}
        for f in self.forwards:
            if f.target not in mine:
                continue
            counter = self.out.counter(f"published_{f.key}_in", f"published {f.name} (input)")
            source = f"{f.nft} saddr {nft_set(list(f.sources))} " if f.sources else ""
            for ports in _published_ports(f):
                chain.append(
                    f"meta nfproto ipv{f.family} {source}{ports} {counter} accept "
                    f"comment {_quote(f'published {f.name}')}"
                )

    def server(self) -> None:
        """A host firewall: only what the policy lets reach this host's zone comes in."""
        out = self.out
        zone_key = str(self.me.get("zone") or "")
        self.common_head(out.input, "input")
        self.metrics_allow(out.input)
        self.monitoring_web_allow(out.input)
        self.events_allow(out.input)
        self.backup_allow(out.input)
        self.probes_allow(out.input)
        self.updates_allow(out.input)
        self.input_allow(out.input)
        self.published_input(out.input)
        pairs, endpoints = self.policy_pairs()
        for (src_key, dst_key), rules in sorted(pairs.items()):
            if dst_key not in (zone_key, self.host):  # its zone, or this host by name
                continue
            src = endpoints[src_key]
            for index, rule in rules:
                names = as_list(rule.get("services"))
                counter = out.counter(
                    f"policy{index}_{src.label}",
                    f"policy rule {index}: {src_key} ({', '.join(names)})",
                )
                when = self.when(index, rule)  # once per rule, not per family and port
                for family in (4, 6):
                    src_match = self.match("saddr", src, family)
                    if src_match is None:
                        continue
                    for rule_family, rule_text in self.port_rules(
                        self.ports(names), f"{counter} accept"
                    ):
                        if rule_family not in (None, family):
                            continue
                        prefix = f"{src_match} " if src_match else ""
                        prefix += when
                        out.input.append(
                            f"{prefix}{rule_text} comment {_quote(f'policy rule {index}')}"
                        )
            out.summary.append(
                f"{src_key} -> {self.host}: rules {', '.join(str(i) for i, _ in rules)}"
            )
        ifaces = (
            {"management": self.settings.management_interface}
            if self.settings.management_interface
            else {}
        )
        self.drop_tail(out.input, "input", ifaces)

    def accept_between(
        self,
        chain: list[str],
        hook: str,
        families: tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]],
        matches: Callable[[str], list[str]],
        counter: str,
    ) -> None:
        """Accept rules from (sources, destinations) per family, IPv4 then IPv6: to this host
        (input: sources only) or through a gateway (forward: destinations too); one rule per
        match of the family (e.g. 'tcp dport { 9100 }')."""
        for family, (sources, inside) in zip(("ip", "ip6"), families, strict=True):
            if not sources or (hook == "forward" and not inside):
                continue
            to = f"{family} daddr {nft_set(inside)} " if hook == "forward" else ""
            for match in matches(family):
                chain.append(f"{family} saddr {nft_set(sources)} {to}{match} {counter} accept")

    def metrics_allow(self, chain: list[str], hook: str = "input") -> None:
        """The exporters' ports, from the monitoring hosts the inventory names and no one else
        (kastro_municipality.monitoring_hosts): to this host (input) or, on a gateway, to the
        municipality's other hosts (forward), with the monitoring hosts' pings of the link ends
        they probe."""
        ports = sorted(set(self.settings.metrics_ports))
        if not ports or not self.monitoring:
            return
        v4, v6 = _split_families(self.monitoring, "kastro_municipality.monitoring_hosts")
        name = "metrics_in" if hook == "input" else "metrics_forward"
        counter = self.out.counter(name, f"metrics scraped by the monitoring hosts ({hook})")
        dport = f"tcp dport {nft_set([str(p) for p in ports])}"

        def matches(family: str) -> list[str]:
            if hook != "forward":
                return [dport]
            # blackbox_exporter's pings of every link end (hosts answer echo themselves).
            return [dport, f"{'icmp' if family == 'ip' else 'icmpv6'} type echo-request"]

        families = ((v4, self.supernet_v4), (v6, self.supernet_v6))
        self.accept_between(chain, hook, families, matches, counter)

    def monitoring_web_allow(self, chain: list[str], hook: str = "input") -> None:
        """Prometheus' and Alertmanager's web ports (TLS, password) of the monitoring hosts,
        from the management networks (admins) and the sensors (their forwarders): to this host
        when it is one (input) or, on a gateway, to them (forward)."""
        if hook == "input" and self.host not in self.monitoring_hosts:
            return
        if not self.monitoring or not self.settings.management_networks:
            return
        name = "monitoring_web_in" if hook == "input" else "monitoring_web_forward"
        counter = self.out.counter(name, f"Prometheus and Alertmanager web ({hook})")
        dport = f"tcp dport {nft_set([str(p) for p in MONITORING_WEB_PORTS])}"
        # The management networks, and every sensor wherever it stands (its forwarder).
        planned = self.plan.get("hosts") or {}
        sensors = monitoring_addresses(
            dict(self.plan), [h for h, e in planned.items() if e.get("role") == "sensor"]
        )
        managed = netaddr.IPSet(self.settings.management_networks)
        sources = _split_families(
            [*self.settings.management_networks, *(a for a in sensors if a not in managed)],
            "management_networks",
        )
        targets = _split_families(self.monitoring, "kastro_municipality.monitoring_hosts")
        families = ((sources[0], targets[0]), (sources[1], targets[1]))
        self.accept_between(chain, hook, families, lambda _: [dport], counter)

    def events_allow(self, chain: list[str], hook: str = "input") -> None:
        """The event collector's port (syslog over TLS), from the managed hosts (every address
        a gateway may connect from) and no one else: to this host when it is the collector
        (input) or, on a gateway, to it (forward)."""
        if not self.collector or (hook == "input" and self.host != self.collector):
            return
        sources = self.managed
        targets = _split_families(
            monitoring_addresses(dict(self.plan), [self.collector]),
            "kastro_municipality.event_collector",
        )
        name = "events_in" if hook == "input" else "events_forward"
        counter = self.out.counter(name, f"managed hosts' logs to the collector ({hook})")
        families = ((sources[0], targets[0]), (sources[1], targets[1]))
        self.accept_between(chain, hook, families, lambda _: [f"tcp dport {EVENTS_PORT}"], counter)

    def backup_allow(self, chain: list[str], hook: str = "input") -> None:
        """The backup server's SSH listener (kastro_backup.server), from the backup clients'
        addresses and no one else: to this host when it is the server (input) or, on a
        gateway, to it (forward)."""
        if not self.backup_server or not self.backup_clients:
            return
        if hook == "input" and self.host != self.backup_server:
            return
        found = {a for h in self.backup_clients for a in host_addresses(self.plan, h)}
        sources = _split_families(sorted(found), "kastro_backup.datasets hosts")
        targets = _split_families(
            monitoring_addresses(dict(self.plan), [self.backup_server]), "kastro_backup.server"
        )
        name = "backup_in" if hook == "input" else "backup_forward"
        counter = self.out.counter(name, f"backup clients to the repository server ({hook})")
        families = ((sources[0], targets[0]), (sources[1], targets[1]))
        port = f"tcp dport {BACKUP_SSH_PORT}"
        self.accept_between(chain, hook, families, lambda _: [port], counter)

    def updates_allow(self, chain: list[str], hook: str = "input") -> None:
        """Kastro's own path to the security updates (kastro.inventory.infra): the managed
        hosts to the apt cache's port, to this host when it is the cache (input) or through a
        gateway (forward), then the way out to the mirrors."""
        if self.update_cache and (hook == "forward" or self.host == self.update_cache):
            counter = self.out.counter(
                f"updates_cache_{hook}", f"managed hosts to the apt cache ({hook})"
            )
            port = f"tcp dport {infra.UPDATE_CACHE_PORT}"
            managed, cache = self.managed, self.cache
            families = ((managed[0], cache[0]), (managed[1], cache[1]))
            self.accept_between(chain, hook, families, lambda _: [port], counter)
        if hook == "forward":
            self.mirrors_allow(chain)

    def mirrors_allow(self, chain: list[str]) -> None:
        """The apt cache alone (or, without one, every managed host) to the internet's mirrors
        (HTTP, HTTPS) and to DNS, which finds them: never to a municipal address."""
        if self.update_cache:
            sources = self.cache
        elif self.updates_direct:
            sources = self.managed
        else:
            return
        counter = self.out.counter("updates_mirrors", "security updates from the mirrors")
        tcp = nft_set([str(p) for p in (infra.DNS_PORT, *infra.MIRROR_PORTS)])
        families = (("ip", sources[0], self.supernet_v4), ("ip6", sources[1], self.supernet_v6))
        for family, found, own in families:
            if not found:
                continue
            outside = f"{family} daddr != {nft_set(own)} " if own else ""
            head = f"{family} saddr {nft_set(found)} {outside}"
            chain.append(f"{head}tcp dport {tcp} {counter} accept")
            chain.append(f"{head}udp dport {infra.DNS_PORT} {counter} accept")

    def time_allow(self, chain: list[str], hook: str = "input") -> None:
        """NTP (kastro.inventory.infra): every gateway serves the time to the municipality's
        addresses (input), and forwards the questions of the gateways without an uplink to
        the gateways with one."""
        if self.out.kind != "gateway":
            return
        port = f"udp dport {infra.NTP_PORT}"
        if hook == "input":
            counter = self.out.counter("time_in", "NTP from the municipality's hosts")
            nowhere: list[str] = []  # input: to this host, no destination
            families = ((self.supernet_v4, nowhere), (self.supernet_v6, nowhere))
            self.accept_between(chain, hook, families, lambda _: [port], counter)
            return
        sources = (self.supernet_v4, self.supernet_v6)
        targets = _split_families(self.time_sources, "time sources")
        if not (targets[0] or targets[1]):
            return
        counter = self.out.counter("time_forward", "NTP to the gateways with an uplink")
        families = ((sources[0], targets[0]), (sources[1], targets[1]))
        self.accept_between(chain, hook, families, lambda _: [port], counter)

    def probes_allow(self, chain: list[str], hook: str = "input") -> None:
        """The monitoring hosts' probes of the services the policy publishes
        (kastro.inventory.probes), exactly those ports and from the monitoring hosts only: to
        this server (input) or, on a gateway, to each probed server (forward). Without them a
        policy that does not name the monitoring host would turn every probe into a
        KastroServiceDown alert."""
        # A monitoring host's probes of itself never leave it (they arrive on lo). A gateway
        # forwards the probes that start or end in its building; a gateway between two others
        # passes them as transit (between two links).
        planned = self.plan.get("hosts") or {}
        building = self.me.get("building")
        local = building in {(planned.get(h) or {}).get("building") for h in self.monitoring_hosts}
        mine = [
            p
            for p in self.probes
            if p.address not in self.monitoring
            and (
                p.host == self.host
                if hook == "input"
                else local or (planned.get(p.host) or {}).get("building") == building
            )
        ]
        if not mine:
            return
        sources = _split_families(self.monitoring, "kastro_municipality.monitoring_hosts")
        name = "probes_in" if hook == "input" else "probes_forward"
        counter = self.out.counter(name, f"the monitoring hosts' service probes ({hook})")
        by_address: dict[str, list[Probe]] = {}
        for probe in mine:
            by_address.setdefault(probe.address, []).append(probe)
        for address, probes in sorted(by_address.items()):
            # From the monitoring hosts' addresses of the probed address's family only.
            v4, v6 = _split_families([address], "kastro_plan.hosts")
            families = ((sources[0] if v4 else [], v4), (sources[1] if v6 else [], v6))
            self.accept_between(chain, hook, families, _constant(_probe_matches(probes)), counter)

    def input_allow(self, chain: list[str]) -> None:
        """Extra services this host itself offers (firewall_input_allow), e.g. OSPF on links."""
        for i, item in enumerate(self.settings.input_allow):
            where = f"firewall_input_allow[{i}]"
            name = NAME_CHARS.sub("_", str(item.get("name") or f"input_allow{i}"))
            ifaces = as_list(item.get("interfaces"))
            sources_v4, sources_v6 = _split_families(
                as_list(item.get("sources")), f"{where}.sources"
            )
            counter = self.out.counter(f"allow_{name}", f"{where}: {item.get('name', '')}")
            for text in as_list(item.get("ports")):
                match = re.fullmatch(r"proto/([a-z]+)", text)
                if match:
                    if match.group(1) not in EXTRA_PROTOCOLS:
                        raise FirewallConfigError(
                            f"{where}.ports: '{text}' names an unknown protocol; use one of "
                            + ", ".join(f"proto/{p}" for p in EXTRA_PROTOCOLS)
                        )
                    statements: list[tuple[int | None, str]] = [
                        (None, f"meta l4proto {match.group(1)} {counter} accept")
                    ]
                else:
                    port, problem = parse_port(text)
                    if port is None:
                        raise FirewallConfigError(f"{where}.ports: {problem}")
                    statements = self.port_rules([(port.protocol, port.span)], f"{counter} accept")
                iface_match = (
                    f"iifname {nft_set([f'{chr(34)}{x}{chr(34)}' for x in ifaces])} "
                    if ifaces
                    else ""
                )
                for family, statement in statements:
                    if sources_v4 or sources_v6:
                        if sources_v4 and family in (None, 4):
                            chain.append(f"{iface_match}ip saddr {nft_set(sources_v4)} {statement}")
                        if sources_v6 and family in (None, 6):
                            chain.append(
                                f"{iface_match}ip6 saddr {nft_set(sources_v6)} {statement}"
                            )
                    else:
                        chain.append(f"{iface_match}{statement}")

    def compile(self) -> Ruleset:
        s = self.settings
        mgmt_v4, mgmt_v6 = _split_families(s.management_networks, "firewall_management_networks")
        allow_v4, allow_v6 = _split_families(
            [*s.allowlist, *s.management_networks], "firewall_allowlist"
        )
        self.out.sets = {
            "management_v4": {"type": "ipv4_addr", "elements": mgmt_v4},
            "management_v6": {"type": "ipv6_addr", "elements": mgmt_v6},
            "allowlist_v4": {"type": "ipv4_addr", "elements": sorted(set(allow_v4))},
            "allowlist_v6": {"type": "ipv6_addr", "elements": sorted(set(allow_v6))},
        }
        self.out.ssh_guard_block = s.ssh_guard_block
        if self.out.kind == "gateway":
            self.gateway()
        else:
            self.server()
        self.output_isolation()
        return self.out


NFT_DAYS = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
            "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}  # fmt: skip


def schedule_match(schedule: Schedule | None) -> str:
    """'meta day {...} meta hour "08:00"-"20:00" ' for a schedule (checked by
    parse_schedule: day names and HH:MM only), '' for none."""
    if schedule is None:
        return ""
    days = ", ".join(f'"{NFT_DAYS[d]}"' for d in schedule.days)
    on_days = f"meta day {{ {days} }} " if days else ""
    return f'{on_days}meta hour "{schedule.start}"-"{schedule.end}" '


def compile_ruleset(
    host: str, variables: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The ruleset for `host` as plain data for the template (see the module docstring)."""
    return Compiler(host, variables, Settings.from_vars(settings)).compile().as_dict()


def management_allows(address: str, interface: str, settings: Mapping[str, Any]) -> bool:
    """Whether the management rules let `address` (arriving on `interface`) reach SSH."""
    s = Settings.from_vars(settings)
    if s.management_interface and interface == s.management_interface:
        return True
    ip = netaddr.IPAddress(address)
    return any(ip in netaddr.IPNetwork(n) for n in s.management_networks)
