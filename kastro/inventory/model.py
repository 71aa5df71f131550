"""The municipality model as typed objects, parsed from the loaded YAML with every error kept.

Field-level checks (types, required fields, unknown fields, syntax of addresses, ports and
keys) happen here; checks that relate several parts of the model live in ``validate.py``.
"""

from __future__ import annotations

import base64
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import netaddr

from kastro.i18n import Joined, t
from kastro.inventory import register as reg
from kastro.inventory.loader import Path_, Source, dotted, shown
from kastro.inventory.ports import Nic, parse_all_ports

ZONE_KINDS = ("staff", "servers", "voip", "cctv", "iot", "guest", "management")
HOST_ROLES = ("gateway", "server", "sensor", "endpoint")
LINK_MEDIA = ("fibre", "radio", "leased", "copper", "internet")
# Media the municipality does not own end to end: traffic must be encrypted.
UNTRUSTED_MEDIA = ("radio", "leased", "internet")
# A link over the public internet: a WireGuard tunnel from the branch's own uplink to the hub's
# public address. Its default OSPF cost is above that of any real link of 2 Mbit/s or more
# (100000 // speed), so the buildings' own links carry the traffic while they are up.
INTERNET_MEDIUM = "internet"
INTERNET_LINK_COST = 65000
PROTOCOLS = ("tcp", "udp", "icmp")
TELEWORKER_STATES = ("enabled", "revoked")
# Always used with fullmatch: `$` would also match before a final newline ("iot\n").
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]")
UPLINK_IFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
HOSTNAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# Words the policy and the firewall give a meaning of their own: a building, zone, group or
# service with one of these names would be ambiguous (teleworkers.finance, the tw. chain label).
RESERVED_NAMES = frozenset({"internet", "teleworkers", "tw", "any", "all", "self", "local"})
RESERVED_FIX = t(
    "rename it; these words are reserved: {words}", words=", ".join(sorted(RESERVED_NAMES))
)
MIN_MTU, MAX_MTU = 1280, 9216  # IPv6 minimum; the largest jumbo frame common switches pass
MAX_CAPACITY_MBPS = 400_000


@dataclass(frozen=True)
class Nis2:
    """Who signs NIS2 reports and who receives them (kastro_nis2)."""

    entity: str  # the legal entity's name as the authority knows it
    security_officer: dict[str, str]
    csirt: dict[str, str]
    loss_threshold_eur: int = 100_000
    # Legal entities within the municipality's network (a water utility is its own NIS2
    # entity): key -> name; buildings, hosts and devices name one with legal_entity.
    entities: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Uplink:
    name: str
    building: str
    capacity_mbps: int
    provider: str = ""
    register: tuple[tuple[str, str], ...] = ()  # contract
    # The gateway's static address on the ISP's network (address/prefix: the prefix is the
    # ISP's network, where published services take their public addresses) and the ISP's
    # router; None when the ISP hands them out (DHCP) or the uplink publishes nothing.
    ipv4: netaddr.IPNetwork | None = None
    gateway_ipv4: netaddr.IPAddress | None = None
    ipv6: netaddr.IPNetwork | None = None
    gateway_ipv6: netaddr.IPAddress | None = None
    # The gateway's port for this uplink: the building's first uplink defaults to the
    # gateway's kastro_interfaces.wan, every further one names its own.
    interface: str = ""
    # Addresses beyond the ISP that answer ping: the uplink is healthy while they answer
    # through it (a silent ISP keeps its link up). Needed when a building has two uplinks.
    probe: tuple[netaddr.IPAddress, ...] = ()

    def network(self, version: int) -> netaddr.IPNetwork | None:
        """The ISP's network of that family on this uplink (None: not given)."""
        found = self.ipv4 if version == 4 else self.ipv6
        return found.cidr if found is not None else None


@dataclass(frozen=True)
class Published:
    """A service of one host the internet reaches on a public address (kastro_published)."""

    name: str
    host: str
    services: tuple[str, ...]
    ipv4: netaddr.IPAddress | None  # public, on an uplink's network: forwarded (DNAT)
    ipv6: netaddr.IPAddress | None  # public, on an uplink's network: forwarded (DNAT66)
    ipv6_own: bool = False  # forwarded to the host's own (global) IPv6 address, no NAT
    sources: tuple[netaddr.IPNetwork, ...] = ()  # empty: the whole internet
    rate: str = ""  # new connections per second from one source, e.g. 20/second
    accept_risk: str = ""
    comment: str = ""


@dataclass(frozen=True)
class Municipality:
    name: str
    domain: str
    supernets_v4: tuple[netaddr.IPNetwork, ...]
    supernets_v6: tuple[netaddr.IPNetwork, ...]
    uplinks: tuple[Uplink, ...]
    mtu: int
    # Hosts that scrape every exporter (Prometheus); the only sources the metrics ports admit.
    monitoring_hosts: tuple[str, ...] = ()
    # The monitoring host that collects every sensor's EVE events (rsyslog over TLS); "": none.
    event_collector: str = ""
    updates: Updates | None = None  # None: the model says nothing (kastro validate refuses)
    # Room to grow in every newly planned zone: a block holds hosts + this much (at least
    # MIN_SPARE_DEVICES more), so a few new devices never force a renumbering. 0: exact fit.
    zone_headroom_percent: int = 25


@dataclass(frozen=True)
class Updates:
    """Where the managed hosts fetch their (security) updates: through the apt cache on one
    server (`cache`), or each straight from the internet's mirrors (`direct`)."""

    cache: str = ""
    direct: bool = False


@dataclass(frozen=True)
class Zone:
    building: str
    name: str
    kind: str
    hosts: int
    subnet: netaddr.IPNetwork | None  # fixed by the admin; otherwise the plan chooses
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.building}.{self.name}"


@dataclass(frozen=True)
class Host:
    name: str
    building: str
    role: str
    zone: str | None
    address: netaddr.IPAddress | None
    ansible_host: str | None
    description: str = ""
    services: tuple[str, ...] = ()  # what it provides (kastro_services names): the register
    register: tuple[
        tuple[str, str], ...
    ] = ()  # owner, criticality, ... (kastro.inventory.register)


@dataclass(frozen=True)
class Building:
    name: str
    description: str
    city_hall: bool
    zones: dict[str, Zone]
    hosts: dict[str, Host]
    devices: dict[str, reg.Device] = field(default_factory=dict)
    register: tuple[tuple[str, str], ...] = ()
    district: str = ""  # δημοτική ενότητα: groups buildings in the topology views


@dataclass(frozen=True)
class Link:
    name: str
    ends: tuple[str, str]
    medium: str
    capacity_mbps: int
    cost: int
    encrypted: bool
    mtu: int
    register: tuple[tuple[str, str], ...] = ()  # supplier, contract


@dataclass(frozen=True)
class Port:
    protocol: str
    first: int
    last: int

    @property
    def span(self) -> str:
        """The port or range as nftables and the inventory write it: 443 or 10000-20000."""
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def __str__(self) -> str:
        return "icmp" if self.protocol == "icmp" else f"{self.protocol}/{self.span}"


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    ports: tuple[Port, ...]


@dataclass(frozen=True)
class Schedule:
    """When a rule holds (local time of the hosts): days (empty: every day) and a window."""

    days: tuple[str, ...]  # mon..sun, in week order
    start: str  # HH:MM
    end: str  # HH:MM (before start: the window crosses midnight)

    def __str__(self) -> str:
        return f"{_day_spans(self.days)} {self.start}-{self.end}".strip()


@dataclass(frozen=True)
class Rule:
    index: int
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    services: tuple[str, ...]
    comment: str
    accept_risk: str = ""
    schedule: Schedule | None = None


@dataclass(frozen=True)
class TeleworkerGroup:
    name: str
    description: str
    pool_size: int

    @property
    def capacity(self) -> int:
        """People the pool holds: WireGuard takes the lower half (minus network, server and
        the offset OpenVPN's server needs in the upper half), OpenVPN mirrors it above."""
        return self.pool_size // 2 - 3


@dataclass(frozen=True)
class Teleworker:
    id: str
    name: str
    group: str
    public_key: str | None
    state: str


@dataclass(frozen=True)
class Dataset:
    """What one host backs up (kastro_backup.datasets): paths and PostgreSQL databases."""

    name: str
    host: str
    paths: tuple[str, ...]
    postgresql: tuple[str, ...]
    rpo_hours: int
    description: str = ""


@dataclass(frozen=True)
class Backup:
    """kastro_backup: the repository server, schedules, retention and the datasets."""

    server: str
    path: str
    schedule: str
    drill: str
    maintenance: str
    check_days: int
    retention: dict[str, int]
    datasets: dict[str, Dataset]
    allow_same_building: bool = False
    # The controller's own state (the inventory, ~/.kastro secrets, incident and response
    # logs): a dataset named `controller`, backed up by `kastro backup controller`.
    controller: Dataset | None = None


@dataclass
class Model:
    municipality: Municipality | None = None
    buildings: dict[str, Building] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    policy: list[Rule] = field(default_factory=list)
    teleworker_groups: dict[str, TeleworkerGroup] = field(default_factory=dict)
    teleworkers: list[Teleworker] = field(default_factory=list)
    nis2: Nis2 | None = None
    backup: Backup | None = None
    published: dict[str, Published] = field(default_factory=dict)
    ports: dict[str, tuple[Nic, ...]] = field(default_factory=dict)  # gateway → its ports

    @property
    def zones(self) -> list[Zone]:
        return [z for b in self.buildings.values() for z in b.zones.values()]

    @property
    def hosts(self) -> list[Host]:
        return [h for b in self.buildings.values() for h in b.hosts.values()]

    def gateway(self, building: str) -> Host | None:
        for host in self.buildings[building].hosts.values():
            if host.role == "gateway":
                return host
        return None


T = TypeVar("T")
_MISSING = object()


@dataclass(frozen=True)
class Derived:
    """A default worked out from the fields read before it (and the section's context)."""

    of: Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Field:
    """One field of a section: its type (None: allowed, read by the section itself), its
    default (required when there is none), a check that returns a problem or None, and the
    fix shown with any error."""

    kind: type | None
    default: Any = _MISSING
    check: Callable[[Any], str | None] | None = None
    fix: str = ""


Fields = dict[str, Field]


class Parser:
    """Reads typed fields out of the loaded data, recording an error for every bad one."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def mapping(
        self, value: Any, path: Path_, what: str, fix: str | None = None
    ) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.src.error(
            path, t("must be a mapping ({what}), not {kind}", what=what, kind=_kind(value)),
            fix or _MAPPING_FIX,
        )  # fmt: skip
        return None

    def fields(self, value: dict[str, Any], path: Path_, allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                fix = t("allowed fields here: {fields}", fields=", ".join(allowed))
                if close:
                    fix = t("did you mean '{close}'? {fix}", close=close[0], fix=fix)
                elif value[key] is None:
                    # {description: Samba, file server}: YAML reads "file server" as a key.
                    fix = t(
                        "if '{key}' is the rest of the value before it (a comma inside "
                        "{{...}}), put that whole value in quotes, e.g. "
                        'description: "..., {key}"; {fix}',
                        key=key, fix=fix,
                    )  # fmt: skip
                self.src.error((*path, key), t("is not a known field"), fix)

    def read(
        self,
        value: dict[str, Any],
        path: Path_,
        table: Fields,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Every field of `table` out of `value` (None where a field is bad or missing), after
        refusing fields the table does not know. `context` feeds Derived defaults."""
        self.fields(value, path, tuple(table))
        got: dict[str, Any] = dict(context or {})
        for name, rule in table.items():
            if rule.kind is None:
                continue
            default = rule.default.of(got) if isinstance(rule.default, Derived) else rule.default
            got[name] = self.get(value, path, name, rule.kind, default, rule.check, rule.fix)
        return got

    def get(
        self,
        value: dict[str, Any],
        path: Path_,
        name: str,
        kind: type[T],
        default: Any = _MISSING,
        check: Callable[[T], str | None] | None = None,
        fix: str = "",
    ) -> T | None:
        if name not in value or value[name] is None:
            if default is _MISSING:
                self.src.error(
                    (*path, name),
                    t("is required"),
                    fix or t("add '{name}:' under {parent}", name=name, parent=dotted(path)),
                )
                return None
            return default  # type: ignore[no-any-return]
        raw = value[name]
        ok = isinstance(raw, kind) and not (kind is int and isinstance(raw, bool))
        if kind is str and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw, ok = str(raw), True
        if not ok:
            wanted = _TYPE_NAMES.get(kind, kind.__name__)
            self.src.error(
                (*path, name),
                t("must be {wanted}, not {kind}", wanted=wanted, kind=_kind(raw)),
                fix or t("write {name} as {wanted}", name=name, wanted=wanted),
            )
            return None
        if isinstance(raw, str) and _LINE_BREAK_OR_CONTROL.search(raw):
            self.src.error(
                (*path, name),
                t("contains a line break or control character"),
                t("write it on one line, without tabs or control characters"),
            )
            return None
        if check is not None:
            problem = check(raw)
            if problem:
                self.src.error((*path, name), problem, fix)
                return None
        return raw  # type: ignore[no-any-return]


# Text reaches comments in rulesets, configs and banners: one line, nothing invisible.
_LINE_BREAK_OR_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAPPING_FIX = t("indent the fields under it as 'name: value' lines")
_TYPE_NAMES: dict[type, str] = {
    str: t("text"),
    int: t("a whole number"),
    bool: t("true or false"),
    list: t("a list"),
    dict: t("a mapping"),
}


def _kind(value: Any) -> str:
    if value is None:
        return t("empty")
    if isinstance(value, bool):
        return t("true/false")
    kinds = {str: t("text"), int: t("a number"), float: t("a number"), list: t("a list"),
             dict: t("a mapping")}  # fmt: skip
    return kinds.get(type(value), type(value).__name__)


def in_range(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        if low <= value <= high:
            return None
        return t("is {value}, outside {low}..{high}", value=value, low=low, high=high)

    return check


def one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in choices:
            return None
        return t("is '{value}', not one of: {choices}", value=value, choices=", ".join(choices))

    return check


def check_name(value: str) -> str | None:
    if not NAME_RE.fullmatch(value):
        return t("'{value}' is not a valid name", value=shown(value))
    return None


def reserved(p: Parser, path: Path_, name: str, what: str) -> bool:
    """Record an error if ``name`` is a reserved word; True when it is."""
    if name in RESERVED_NAMES:
        p.src.error(
            path, t("'{name}' is a reserved word and cannot name a {what}", name=name, what=what),
            RESERVED_FIX,
        )  # fmt: skip
        return True
    return False


NAME_FIX = t(
    "use lower-case letters, digits and '-', starting with a letter (at most 32 characters)"
)


def parse_network(text: Any, version: int | None = None) -> tuple[netaddr.IPNetwork | None, str]:
    """A CIDR written by an admin: returns the network, or None and why it is wrong."""
    if not isinstance(text, str) or "/" not in text:
        return None, t(
            "'{text}' is not a CIDR network (address/prefix, e.g. 10.20.0.0/16)", text=text
        )
    try:
        net = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None, t("'{text}' is not a valid CIDR network", text=text)
    if version is not None and net.version != version:
        return None, t(
            "'{text}' is IPv{version}, IPv{wanted} expected",
            text=text,
            version=net.version,
            wanted=version,
        )
    if net.ip != net.network:
        return None, t(
            "'{text}' has host bits set (the network is {cidr})", text=text, cidr=net.cidr
        )
    return net, ""


# Blocks a municipality's own addresses can never come from: a supernet that covers one of
# them (0.0.0.0/0 above all) would make the firewall treat the internet as "inside".
_SPECIAL_NETWORKS = tuple(
    netaddr.IPNetwork(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/8",
        "fe80::/10",
        "ff00::/8",
    )
)
MIN_SUPERNET_PREFIX = {4: 8, 6: 16}


def supernet_problem(net: netaddr.IPNetwork) -> str:
    """Why a block cannot be a municipality's supernet, or ''."""
    if net.prefixlen < MIN_SUPERNET_PREFIX[net.version]:
        return t(
            "is far too large for one municipality (at most /{prefix}); it would "
            "count the internet as inside",
            prefix=MIN_SUPERNET_PREFIX[net.version],
        )
    for special in _SPECIAL_NETWORKS:
        if special.version == net.version and (net in special or special in net):
            return t(
                "overlaps {special}, which is never a municipality's own address space",
                special=special,
            )
    return ""


def wireguard_key_problem(key: str) -> str | None:
    """A WireGuard public key is 32 bytes, base64: 44 characters ending in '='."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (ValueError, TypeError):
        return t("is not a WireGuard public key (not base64)")
    if len(raw) != 32 or len(key) != 44:
        return t("is not a WireGuard public key ({count} bytes, 32 expected)", count=len(raw))
    if base64.b64encode(raw).decode("ascii") != key:
        # wg refuses a key whose last character carries bits beyond the 32 bytes.
        return t("is not a WireGuard public key (its last character is not one wg accepts)")
    return None


def parse_port(text: Any) -> tuple[Port | None, str]:
    if not isinstance(text, str):
        return None, t("'{text}' is not a port; write protocol/port such as tcp/443", text=text)
    if text == "icmp":
        return Port("icmp", 0, 0), ""
    match = re.fullmatch(r"(tcp|udp)/(\d{1,5})(?:-(\d{1,5}))?", text)
    if not match:
        return None, t(
            "'{text}' is not a port; write tcp/PORT, udp/PORT, tcp/FIRST-LAST or icmp", text=text
        )
    first = int(match.group(2))
    last = int(match.group(3) or first)
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        return None, t("'{text}' has a port outside 1..65535", text=text)
    if last < first:
        return None, t("'{text}' has a range that ends before it starts", text=text)
    return Port(match.group(1), first, last), ""


# --- the model's field rules: one table per section ------------------------------------------
# Order is the order of the "allowed fields" hint. Fields with kind None are allowed and read
# by the section's own code (networks, addresses, lists of names).


def _register(names: tuple[str, ...]) -> Fields:
    """The asset register's optional fields (kastro.inventory.register), with their checks."""
    return {name: Field(str, "", *reg.CHECKS[name]) for name in names}


def _check_hostname(value: str) -> str | None:
    return None if HOSTNAME_RE.fullmatch(value) else t("{value!r} is not a host name", value=value)


MUNICIPALITY_FIELDS: Fields = {
    "name": Field(str),
    "domain": Field(
        str,
        check=lambda d: (
            None if DOMAIN_RE.fullmatch(d) else t("'{domain}' is not a DNS domain name", domain=d)
        ),
        fix=t("write the municipality's domain in lower case, e.g. dimos-kastrou.gr"),
    ),
    "supernets": Field(list, fix=t("list the municipality's address blocks, e.g. [10.20.0.0/16]")),
    "uplinks": Field(list, []),
    "mtu": Field(
        int,
        1500,
        in_range(MIN_MTU, MAX_MTU),
        t(
            "use the MTU of the building networks, {low}..{high} (usually 1500)",
            low=MIN_MTU,
            high=MAX_MTU,
        ),
    ),
    "population": Field(None),
    "monitoring_hosts": Field(list, []),
    "event_collector": Field(
        str,
        "",
        _check_hostname,
        t("name one of monitoring_hosts, e.g. event_collector: monitor"),
    ),
    "updates": Field(None),
    "zone_headroom_percent": Field(
        int,
        25,
        in_range(0, 400),
        t("give the room to grow in each new zone as a percentage 0..400 (default 25)"),
    ),
}
UPDATES_FIX = t(
    "name the server that runs the apt cache (updates: {{cache: mailrelay}}), or let every managed"
    " host fetch from the internet itself (updates: {{direct: true}})"
)
UPDATES_FIELDS: Fields = {
    "cache": Field(
        str,
        "",
        _check_hostname,
        t("name the server that runs the apt cache, e.g. cache: mailrelay"),
    ),
    "direct": Field(bool, False, fix=t("write true or false")),
}
UPLINK_FIELDS: Fields = {
    "name": Field(str, check=check_name, fix=NAME_FIX),
    "building": Field(str),
    "capacity_mbps": Field(
        int,
        check=in_range(1, MAX_CAPACITY_MBPS),
        fix=t("give the contracted speed in Mbit/s (1..{max})", max=MAX_CAPACITY_MBPS),
    ),
    "provider": Field(str, "", reg.CHECKS["supplier"][0], t("write the ISP's name on one line")),
    **_register(("contract",)),
    "ipv4": Field(None),
    "gateway_ipv4": Field(None),
    "ipv6": Field(None),
    "gateway_ipv6": Field(None),
    "interface": Field(
        str,
        "",
        lambda v: (
            None
            if UPLINK_IFACE_RE.fullmatch(v)
            else t("{value!r} is not an interface name", value=v)
        ),
        t(
            "write the gateway's port for this uplink (at most 15 letters, digits, '-', '_', '.'), "
            "e.g. interface: wan2"
        ),
    ),
    "probe": Field(list, []),
}
BUILDING_FIELDS: Fields = {
    "description": Field(str, ""),
    "city_hall": Field(bool, False),
    "zones": Field(dict, {}),
    "hosts": Field(dict, {}),
    "devices": Field(dict, {}),
    "district": Field(
        str, "", reg.text_problem, t("write the district on one line, e.g. district: Κάστρο")
    ),
    **_register(reg.BUILDING_REGISTER),
}
ZONE_FIELDS: Fields = {
    "kind": Field(
        str,
        Derived(lambda got: got["_name"] if got["_name"] in ZONE_KINDS else _MISSING),
        one_of(ZONE_KINDS),
        t("set kind to one of: {kinds}", kinds=", ".join(ZONE_KINDS)),
    ),
    "hosts": Field(
        int,
        check=in_range(1, 1_000_000),
        fix=t("give the number of devices the zone must hold (at least 1)"),
    ),
    "subnet": Field(None),
    "description": Field(str, ""),
}
HOST_FIELDS: Fields = {
    "role": Field(
        str,
        check=one_of(HOST_ROLES),
        fix=t("set role to one of: {roles}", roles=", ".join(HOST_ROLES)),
    ),
    "zone": Field(str, None),
    "address": Field(None),
    # Handed to ssh as its host argument: '-oProxyCommand=...' would be an option there.
    "ansible_host": Field(
        str,
        None,
        lambda v: (
            None if _ssh_target(v) else t("'{value}' is not an address or host name", value=v)
        ),
        t("write the address or DNS name Ansible connects to, e.g. 10.20.3.100"),
    ),
    "description": Field(str, ""),
    "services": Field(list, [], fix=t("list the kastro_services it provides, e.g. [web, ssh]")),
    **_register(reg.HOST_REGISTER),
}
DEVICE_FIELDS: Fields = {
    "zone": Field(str, fix=t("name the zone of the building the device sits in")),
    "kind": Field(
        str,
        check=one_of(reg.DEVICE_KINDS),
        fix=t("set kind to one of: {kinds}", kinds=", ".join(reg.DEVICE_KINDS)),
    ),
    "description": Field(str, ""),
    "services": Field(list, [], fix=t("list the kastro_services it provides, e.g. [printing]")),
    "fixed_address": Field(bool, False),
    **_register(reg.HOST_REGISTER),
}
LINK_FIELDS: Fields = {
    "ends": Field(list, fix=t("list the two buildings, e.g. [cityhall, kep]")),
    "medium": Field(
        str,
        check=one_of(LINK_MEDIA),
        fix=t("set medium to one of: {media}", media=", ".join(LINK_MEDIA)),
    ),
    "capacity_mbps": Field(
        int,
        check=in_range(1, MAX_CAPACITY_MBPS),
        fix=t("give the link's speed in Mbit/s (1..{max})", max=MAX_CAPACITY_MBPS),
    ),
    # OSPF's usual reference: 100 Gbit/s, so 1 Gbit/s costs 100 and 10 Mbit/s 10000.
    "cost": Field(
        int,
        Derived(lambda got: _default_cost(got["medium"], got["capacity_mbps"])),
        in_range(1, 65535),
        t("give an OSPF cost 1..65535 (lower is preferred), or remove it"),
    ),
    "encrypted": Field(
        bool, Derived(lambda got: got["medium"] in UNTRUSTED_MEDIA if got["medium"] else True)
    ),
    "mtu": Field(
        int,
        Derived(lambda got: got["_mtu"]),
        in_range(MIN_MTU, MAX_MTU),
        t("use the link's MTU, {low}..{high} (usually 1500)", low=MIN_MTU, high=MAX_MTU),
    ),
    "description": Field(None),
    **_register(reg.LINK_REGISTER),
}


def _default_cost(medium: str | None, capacity: int | None) -> int:
    """OSPF's cost from the speed (reference 100 Gbit/s); the internet's above the real links'."""
    by_speed = max(1, 100_000 // capacity) if capacity else 1
    return max(by_speed, INTERNET_LINK_COST) if medium == INTERNET_MEDIUM else by_speed


SERVICE_FIELDS: Fields = {
    "ports": Field(list, fix=t("list ports such as [tcp/80, tcp/443]")),
    "description": Field(str, ""),
}
RULE_FIELDS: Fields = {
    "from": Field(None),
    "to": Field(None),
    "services": Field(None),
    "comment": Field(str, ""),
    # Why a rule the validation calls risky is wanted anyway, and who decided (one line).
    "accept_risk": Field(str, ""),
    "schedule": Field(None),  # read by parse_schedule
}
POOL_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
TELEWORKER_GROUP_FIELDS: Fields = {
    "description": Field(str, ""),
    "pool_size": Field(
        int,
        64,
        lambda n: (
            None if n in POOL_SIZES else t("is {n}, not a power of two between 8 and 1024", n=n)
        ),
        t("use 8, 16, 32, 64, 128, 256, 512 or 1024 addresses"),
    ),
}
TELEWORKER_FIELDS: Fields = {
    "id": Field(
        str,
        check=check_name,
        fix=t("give a stable id that never changes or gets reused, e.g. tw-0007"),
    ),
    "name": Field(str),
    "group": Field(str),
    "public_key": Field(
        str,
        None,
        wireguard_key_problem,
        t(
            "paste the 44-character public key from the employee's WireGuard app, "
            "or remove public_key to let Kastro generate the keys"
        ),
    ),
    "state": Field(str, "enabled", one_of(TELEWORKER_STATES), t("set state to enabled or revoked")),
    "email": Field(None),
}


def parse_model(src: Source) -> Model:
    """Turn the loaded data into a Model; every problem becomes an error in ``src``."""
    p = Parser(src)
    model = Model()
    data = src.data
    for key in ("kastro_municipality", "kastro_buildings", "kastro_links"):
        if key not in data and not src.errors:
            src.error(
                (key,),
                "is missing",
                t("define {key} in group_vars/all (see docs/inventory.md)", key=key),
            )
    if "kastro_municipality" in data:
        model.municipality = _municipality(p, data["kastro_municipality"])
    if "kastro_buildings" in data:
        model.buildings = _buildings(p, data["kastro_buildings"])
    if "kastro_links" in data:
        mtu = model.municipality.mtu if model.municipality else 1500
        model.links = _links(p, data["kastro_links"], mtu)
    if "kastro_services" in data:
        model.services = _services(p, data["kastro_services"])
    if "kastro_policy" in data:
        model.policy = _policy(p, data["kastro_policy"])
    if "kastro_teleworker_groups" in data:
        model.teleworker_groups = _teleworker_groups(p, data["kastro_teleworker_groups"])
    if "kastro_teleworkers" in data:
        model.teleworkers = _teleworkers(p, data["kastro_teleworkers"])
    if "kastro_nis2" in data:
        model.nis2 = _nis2(p, data["kastro_nis2"])
    if "kastro_backup" in data:
        model.backup = _backup(p, data["kastro_backup"])
    if "kastro_published" in data:
        model.published = _published(p, data["kastro_published"])
    if "kastro_ports" in data:
        model.ports = parse_all_ports(src, data["kastro_ports"])
    return model


NIS2_FIELDS: Fields = {
    "entity": Field(str, "", fix=t("the legal entity's name, e.g. Δήμος Κάστρου")),
    "security_officer": Field(dict, {}),
    "csirt": Field(dict, {}),
    "entities": Field(dict, {}, fix=t("e.g. entities: {{deya: ΔΕΥΑ Κάστρου}}")),
    "loss_threshold_eur": Field(
        int,
        100_000,
        in_range(1, 10**9),
        t("the financial loss (EUR) that makes an incident significant, e.g. 100000"),
    ),
}
CONTACT_KEYS = ("name", "role", "email", "phone", "portal")
_CONTACT = re.compile(r"[^\x00-\x1f\x7f<>]{1,200}")


def _nis2(p: Parser, raw: Any) -> Nis2 | None:
    path: Path_ = ("kastro_nis2",)
    m = p.mapping(raw, path, "entity, security_officer, csirt")
    if m is None:
        return None
    got = p.read(m, path, NIS2_FIELDS)
    contacts = {key: _contact(p, (*path, key), got[key]) for key in ("security_officer", "csirt")}
    if got["entity"] is None or got["loss_threshold_eur"] is None:
        return None
    return Nis2(
        got["entity"], contacts["security_officer"], contacts["csirt"], got["loss_threshold_eur"],
        _entities(p, (*path, "entities"), got["entities"] or {}),
    )  # fmt: skip


def _entities(p: Parser, path: Path_, raw: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, name in raw.items():
        problem = reg.CHECKS["legal_entity"][0](key) or reg.text_problem(name)
        if problem:
            p.src.error(
                (*path, str(key)),
                problem,
                t(
                    "write key: name, e.g. deya: ΔΕΥΑ Κάστρου (key in lower-case letters, "
                    "digits and '-')"
                ),
            )
        else:
            out[str(key)] = str(name)
    return out


def _contact(p: Parser, path: Path_, raw: dict[str, Any] | None) -> dict[str, str]:
    """A person or an office: name, role, email, phone, portal; plain one-line texts."""
    out: dict[str, str] = {}
    p.fields(raw or {}, path, CONTACT_KEYS)
    for key, value in (raw or {}).items():
        if key in CONTACT_KEYS and isinstance(value, str) and _CONTACT.fullmatch(value):
            out[key] = value
        elif key in CONTACT_KEYS:
            p.src.error(
                (*path, key),
                t(
                    "'{value}' is not a one-line text of at most 200 characters",
                    value=shown(str(value)),
                ),
                t("write it on one line, without < or >, e.g. email: ciso@dimos-kastrou.gr"),
            )
    return out


def _municipality(p: Parser, raw: Any) -> Municipality | None:
    path: Path_ = ("kastro_municipality",)
    m = p.mapping(raw, path, "name, domain, supernets, ...")
    if m is None:
        return None
    got = p.read(m, path, MUNICIPALITY_FIELDS)
    name, domain, mtu, supernets = got["name"], got["domain"], got["mtu"], got["supernets"]
    v4, v6 = _supernets(p, supernets)
    uplinks = _uplinks(p, got["uplinks"] or [])
    monitoring_hosts = _monitoring_hosts(p, got["monitoring_hosts"] or [])
    updates = _updates(p, m.get("updates"))
    if name is None or domain is None or mtu is None:
        return None
    return Municipality(
        name,
        domain,
        tuple(v4),
        tuple(v6),
        tuple(uplinks),
        mtu,
        tuple(monitoring_hosts),
        str(got["event_collector"] or ""),
        updates,
        25 if got["zone_headroom_percent"] is None else got["zone_headroom_percent"],
    )


def _updates(p: Parser, raw: Any) -> Updates | None:
    if raw is None:
        return None
    path: Path_ = ("kastro_municipality", "updates")
    m = p.mapping(raw, path, t("cache: SERVER or direct: true"), UPDATES_FIX)
    if m is None:
        return None
    got = p.read(m, path, UPDATES_FIELDS)
    return Updates(str(got["cache"] or ""), bool(got["direct"]))


def _supernets(
    p: Parser, supernets: list[Any] | None
) -> tuple[list[netaddr.IPNetwork], list[netaddr.IPNetwork]]:
    path: Path_ = ("kastro_municipality",)
    v4: list[netaddr.IPNetwork] = []
    v6: list[netaddr.IPNetwork] = []
    for i, text in enumerate(supernets or []):
        net, problem = parse_network(text)
        if net is None:
            p.src.error(
                (*path, "supernets", i),
                problem,
                t("write the block as NETWORK/PREFIX, e.g. 10.20.0.0/16 or fd20:4b41::/48"),
            )
        elif supernet_problem(net):
            p.src.error(
                (*path, "supernets", i),
                Joined([str(net), supernet_problem(net)], " "),
                t("list the municipality's own blocks, e.g. 10.20.0.0/16 or fd20:4b41::/48"),
            )
        else:
            (v4 if net.version == 4 else v6).append(net)
    if supernets is not None and not v4 and not p.src.errors:
        p.src.error(
            (*path, "supernets"),
            t("has no IPv4 network"),
            t("add a private IPv4 block such as 10.20.0.0/16"),
        )
    return v4, v6


def _uplinks(p: Parser, raw: list[Any]) -> list[Uplink]:
    uplinks: list[Uplink] = []
    for i, raw_up in enumerate(raw):
        upath: Path_ = ("kastro_municipality", "uplinks", i)
        up = p.mapping(raw_up, upath, "name, building, capacity_mbps")
        if up is None:
            continue
        got = p.read(up, upath, UPLINK_FIELDS)
        uname, ubuilding, ucap = got["name"], got["building"], got["capacity_mbps"]
        addressing = _uplink_addresses(p, upath, up)
        probe = _uplink_probe(p, upath, got["probe"])
        if uname and ubuilding and ucap and addressing is not None and probe is not None:
            provider = got["provider"] if isinstance(got["provider"], str) else ""
            iface = got["interface"] if isinstance(got["interface"], str) else ""
            uplinks.append(
                Uplink(uname, ubuilding, ucap, provider, reg.read(got, ("contract",)), *addressing,
                       interface=iface, probe=probe)
            )  # fmt: skip
    return uplinks


def _uplink_probe(p: Parser, path: Path_, raw: Any) -> tuple[netaddr.IPAddress, ...] | None:
    """probe: plain IPv4 addresses (what answers ping beyond the ISP); None after an error."""
    out = []
    for j, text in enumerate(raw if isinstance(raw, list) else []):
        address = _plain_address(text, 4)
        if address is None:
            p.src.error((*path, "probe", j), t("{value!r} is not an IPv4 address", value=text),
                        t("write addresses beyond the ISP that answer ping, e.g. probe: "
                          "[192.0.2.53, 198.51.100.53] (the ISP's DNS servers)"))  # fmt: skip
            return None
        out.append(address)
    return tuple(out)


UplinkAddresses = tuple[
    netaddr.IPNetwork | None, netaddr.IPAddress | None,
    netaddr.IPNetwork | None, netaddr.IPAddress | None,
]  # fmt: skip


def _uplink_addresses(p: Parser, path: Path_, raw: dict[str, Any]) -> UplinkAddresses | None:
    """ipv4/ipv6 (the gateway's address/prefix on the ISP's network) and gateway_ipv4/6 (the
    ISP's router, inside that network); None after an error."""
    out: list[Any] = []
    ok = True
    for version, example, router in ((4, "198.51.100.2/29", "198.51.100.1"),
                                     (6, "2001:db8:100::2/64", "2001:db8:100::1")):  # fmt: skip
        key, gateway_key = f"ipv{version}", f"gateway_ipv{version}"
        text, gateway_text = raw.get(key), raw.get(gateway_key)
        iface = gateway = None
        if text is not None:
            iface = _interface_address(text, version)
            if iface is None:
                p.src.error((*path, key), t("{value!r} is not an IPv{version} address with its "
                                            "prefix", value=text, version=version),
                            t("write the gateway's address on the ISP's network with the "
                              "network's prefix, e.g. {key}: {example}", key=key,
                              example=example))  # fmt: skip
                ok = False
        if gateway_text is not None and (iface is not None or text is None):
            gateway = _plain_address(gateway_text, version)
            if gateway is None or iface is None or gateway not in iface or gateway == iface.ip:
                p.src.error((*path, gateway_key), t("{value!r} is not another address of {key}'s "
                                                    "network", value=gateway_text, key=key),
                            t("write the ISP router's address, e.g. {gateway}: {router} (with "
                              "{key}: set)", gateway=gateway_key, router=router,
                              key=key))  # fmt: skip
                ok = False
        out += [iface, gateway]
    return (out[0], out[1], out[2], out[3]) if ok else None


def _plain_address(text: Any, version: int) -> netaddr.IPAddress | None:
    """An address without prefix of that family, or None."""
    if not isinstance(text, str) or "/" in text:
        return None
    try:
        address = netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    return address if address.version == version else None


def _interface_address(text: Any, version: int) -> netaddr.IPNetwork | None:
    """ADDRESS/PREFIX of that family whose address is a usable host of the network."""
    if not isinstance(text, str) or "/" not in text:
        return None
    try:
        net = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    if net.version != version or net.prefixlen == (32 if version == 4 else 128):
        return None
    if version == 4 and net.prefixlen < 31 and net.ip in (net.network, net.broadcast):
        return None
    return net


def _monitoring_hosts(p: Parser, raw: list[Any]) -> list[str]:
    hosts: list[str] = []
    for i, host in enumerate(raw):
        if not isinstance(host, str) or not HOSTNAME_RE.fullmatch(host):
            p.src.error(
                ("kastro_municipality", "monitoring_hosts", i),
                t("{host!r} is not a host name", host=host),
                t("name a server of kastro_buildings, e.g. [monitor]"),
            )
        else:
            hosts.append(host)
    return hosts


def _buildings(p: Parser, raw: Any) -> dict[str, Building]:
    path: Path_ = ("kastro_buildings",)
    m = p.mapping(raw, path, t("one entry per building"))
    if m is None:
        return {}
    out: dict[str, Building] = {}
    for bname, braw in m.items():
        bpath: Path_ = (*path, bname)
        if check_name(str(bname)):
            p.src.error(
                bpath, t("'{name}' is not a valid building name", name=shown(str(bname))), NAME_FIX
            )
            continue
        if reserved(p, bpath, str(bname), t("building")):
            continue
        b = p.mapping(braw, bpath, "description, zones, hosts")
        if b is None:
            continue
        got = p.read(b, bpath, BUILDING_FIELDS)
        description, city_hall = got["description"], got["city_hall"]
        zraw_all = p.mapping(got["zones"], (*bpath, "zones"), "zones")
        zones = {
            str(zname): zone
            for zname, zraw in (zraw_all or {}).items()
            if (zone := _zone(p, bname, str(zname), zraw)) is not None
        }
        hraw_all = p.mapping(got["hosts"], (*bpath, "hosts"), "hosts")
        hosts = {
            str(hname): host
            for hname, hraw in (hraw_all or {}).items()
            if (host := _host(p, bname, str(hname), hraw)) is not None
        }
        draw_all = p.mapping(got["devices"], (*bpath, "devices"), "devices")
        devices = {
            str(dname): device
            for dname, draw in (draw_all or {}).items()
            if (device := _device(p, bname, str(dname), draw)) is not None
        }
        if description is not None and city_hall is not None:
            out[bname] = Building(
                bname, description, city_hall, zones, hosts, devices,
                reg.read(got, reg.BUILDING_REGISTER), got["district"] or "",
            )  # fmt: skip
    return out


def _device(p: Parser, building: str, dname: str, raw: Any) -> reg.Device | None:
    """A device Kastro documents but does not manage (a PC, a PLC, a printer)."""
    dpath: Path_ = ("kastro_buildings", building, "devices", dname)
    if not HOSTNAME_RE.fullmatch(dname):
        p.src.error(
            dpath,
            t("'{name}' is not a valid device name", name=shown(dname)),
            t("use lower-case letters, digits and '-' (RFC 1123), e.g. scada-hmi"),
        )
        return None
    if reserved(p, dpath, dname, t("device")):  # a policy rule may name a device
        return None
    d = p.mapping(raw, dpath, "zone, kind, description")
    if d is None:
        return None
    got = p.read(d, dpath, DEVICE_FIELDS)
    if got["zone"] is None or got["kind"] is None:
        return None
    return reg.Device(
        dname, building, got["zone"], got["kind"], got["description"] or "",
        tuple(str(s) for s in got["services"] or []), reg.read(got, reg.HOST_REGISTER),
        bool(got["fixed_address"]),
    )  # fmt: skip


def _zone(p: Parser, building: str, zname: str, raw: Any) -> Zone | None:
    zpath: Path_ = ("kastro_buildings", building, "zones", zname)
    if check_name(zname):
        p.src.error(zpath, t("'{name}' is not a valid zone name", name=shown(zname)), NAME_FIX)
        return None
    if reserved(p, zpath, zname, t("zone")):
        return None
    z = p.mapping(raw, zpath, "hosts, kind, subnet")
    if z is None:
        return None
    got = p.read(z, zpath, ZONE_FIELDS, {"_name": zname})
    kind, hosts = got["kind"], got["hosts"]
    subnet = None
    if "subnet" in z:
        subnet, problem = parse_network(z["subnet"], 4)
        if subnet is None:
            p.src.error(
                (*zpath, "subnet"),
                problem,
                t(
                    "write an IPv4 network such as 10.20.5.0/24, or remove subnet to let "
                    "'kastro apply' choose"
                ),
            )
    description = got["description"] or ""
    return Zone(building, zname, kind, hosts, subnet, description) if kind and hosts else None


def _host(p: Parser, building: str, hname: str, raw: Any) -> Host | None:
    hpath: Path_ = ("kastro_buildings", building, "hosts", hname)
    if not HOSTNAME_RE.fullmatch(hname):
        p.src.error(
            hpath,
            t("'{name}' is not a valid host name", name=shown(hname)),
            t("use lower-case letters, digits and '-' (RFC 1123)"),
        )
        return None
    if reserved(p, hpath, hname, t("host")):  # a policy rule may name a host
        return None
    h = p.mapping(raw, hpath, "role, zone")
    if h is None:
        return None
    got = p.read(h, hpath, HOST_FIELDS)
    role, zone, ansible_host = got["role"], got["zone"], got["ansible_host"]
    address = None
    if "address" in h:
        try:
            address = netaddr.IPAddress(str(h["address"]))
        except (netaddr.AddrFormatError, ValueError):
            p.src.error(
                (*hpath, "address"),
                t("'{address}' is not an IP address", address=h["address"]),
                t(
                    "write one address such as 10.20.1.10, or remove it to let 'kastro "
                    "apply' choose"
                ),
            )
    if not role:
        return None
    if role != "gateway" and zone is None:
        p.src.error(
            (*hpath, "zone"),
            t("is required for a {role}", role=role),
            t("add the zone of {building} the host sits in", building=building),
        )
        return None
    services = tuple(str(s) for s in got["services"] or [])
    return Host(
        hname, building, role, zone, address, ansible_host, got["description"] or "", services,
        reg.read(got, reg.HOST_REGISTER),
    )  # fmt: skip


def _ssh_target(value: str) -> bool:
    try:
        netaddr.IPAddress(value)
    except (netaddr.AddrFormatError, ValueError):
        return bool(_SSH_NAME.fullmatch(value))
    return True


_SSH_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*")


def _links(p: Parser, raw: Any, default_mtu: int) -> dict[str, Link]:
    path: Path_ = ("kastro_links",)
    m = p.mapping(raw, path, t("one entry per link"))
    if m is None:
        return {}
    out: dict[str, Link] = {}
    for lname, lraw in m.items():
        lpath: Path_ = (*path, lname)
        if check_name(str(lname)):
            p.src.error(
                lpath, t("'{name}' is not a valid link name", name=shown(str(lname))), NAME_FIX
            )
            continue
        if reserved(p, lpath, str(lname), t("link")):
            continue
        link = p.mapping(lraw, lpath, "ends, medium, capacity_mbps")
        if link is None:
            continue
        got = p.read(link, lpath, LINK_FIELDS, {"_mtu": default_mtu})
        ends = got["ends"]
        if ends is not None and (len(ends) != 2 or not all(isinstance(e, str) for e in ends)):
            p.src.error(
                (*lpath, "ends"),
                t("must name exactly two buildings, not {count}", count=len(ends)),
                t("list the two buildings the link joins, e.g. [cityhall, kep]"),
            )
            ends = None
        medium, capacity, cost = got["medium"], got["capacity_mbps"], got["cost"]
        encrypted, mtu = got["encrypted"], got["mtu"]
        if ends and medium and capacity and cost and encrypted is not None and mtu:
            out[lname] = Link(
                lname, (ends[0], ends[1]), medium, capacity, cost, encrypted, mtu,
                reg.read(got, reg.LINK_REGISTER),
            )  # fmt: skip
    return out


def _service_fix(name: str, raw: Any) -> str:
    """The shape a service needs, with the admin's own ports when a bare list was written."""
    if isinstance(raw, list) and all(isinstance(port, str) for port in raw):
        ports = ", ".join(raw)
    else:
        ports = "tcp/443"
    return t(
        "write it as {name}: {{ports: [{ports}], description: what it is}}",
        name=shown(name),
        ports=ports,
    )


def _services(p: Parser, raw: Any) -> dict[str, Service]:
    path: Path_ = ("kastro_services",)
    m = p.mapping(raw, path, t("one entry per service"))
    if m is None:
        return {}
    out: dict[str, Service] = {}
    for sname, sraw in m.items():
        spath: Path_ = (*path, sname)
        if check_name(str(sname)):
            p.src.error(
                spath, t("'{name}' is not a valid service name", name=shown(str(sname))), NAME_FIX
            )
            continue
        if reserved(p, spath, str(sname), t("service")):
            continue
        s = p.mapping(sraw, spath, "ports, description", _service_fix(str(sname), sraw))
        if s is None:
            continue
        got = p.read(s, spath, SERVICE_FIELDS)
        description, ports_raw = got["description"], got["ports"]
        ports: list[Port] = []
        for i, text in enumerate(ports_raw or []):
            port, problem = parse_port(text)
            if port is None:
                p.src.error(
                    (*spath, "ports", i),
                    problem,
                    t("write tcp/PORT, udp/PORT, tcp/FIRST-LAST or icmp, e.g. tcp/443"),
                )
            else:
                ports.append(port)
        if ports_raw is not None and not ports_raw:
            p.src.error((*spath, "ports"), t("is empty"), t("list at least one port, e.g. tcp/443"))
        if ports and len(ports) == len(ports_raw or []):
            out[sname] = Service(sname, description or "", tuple(ports))
    return out


def _names(p: Parser, value: Any, path: Path_, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    p.src.error(
        path,
        t("must name one {what} or a list of them", what=what),
        t("write a {what} such as 'staff', or a list like [staff, voip]", what=what),
    )
    return ()


def _policy(p: Parser, raw: Any) -> list[Rule]:
    path: Path_ = ("kastro_policy",)
    if not isinstance(raw, list):
        p.src.error(
            path,
            t("must be a list of rules, not {kind}", kind=_kind(raw)),
            t("write each rule as '- from: ...' with to:, services:"),
        )
        return []
    rules: list[Rule] = []
    for i, rraw in enumerate(raw):
        rpath: Path_ = (*path, i)
        r = p.mapping(rraw, rpath, "from, to, services")
        if r is None:
            continue
        got = p.read(r, rpath, RULE_FIELDS)
        comment, accept_risk = got["comment"], got["accept_risk"]
        missing = [k for k in ("from", "to", "services") if k not in r]
        for k in missing:
            p.src.error(
                (*rpath, k), t("is required"), t("each rule needs from:, to: and services:")
            )
        if missing:
            continue
        sources = _names(p, r["from"], (*rpath, "from"), t("zone or group"))
        destinations = _names(p, r["to"], (*rpath, "to"), "zone")
        services = _names(p, r["services"], (*rpath, "services"), "service")
        schedule, problem, fix = parse_schedule(r.get("schedule"))
        if problem:
            p.src.error((*rpath, "schedule"), problem, fix)
            continue
        if sources and destinations and services:
            rules.append(
                Rule(i, sources, destinations, services, comment or "", accept_risk or "", schedule)
            )
    return rules


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
# The kernel tells the day of the week in UTC: with days, a window must lie where the local
# day and the UTC day agree (Greece is UTC+2/+3), after 03:00 and before midnight.
EARLIEST_WITH_DAYS = "03:00"
SCHEDULE_FIX = t(
    "write schedule: {{days: mon-fri, hours: '08:00-20:00'}} (days: mon..sun, a range or a "
    "list; hours: HH:MM-HH:MM, local time)"
)


def parse_schedule(raw: Any) -> tuple[Schedule | None, str, str]:
    """A rule's schedule, strictly: (schedule, '', '') or (None, problem, fix); no schedule
    is (None, '', ''). The firewall renders only what this returns."""
    if raw is None:
        return None, "", ""
    if not isinstance(raw, dict) or not set(raw) <= {"days", "hours"} or "hours" not in raw:
        return None, t("must be a mapping with hours and, optionally, days"), SCHEDULE_FIX
    hours = raw["hours"]
    match = _HOURS.fullmatch(hours) if isinstance(hours, str) else None
    if match is None or match.group(1, 2) == match.group(3, 4):
        return None, t("hours {hours!r} is not a window HH:MM-HH:MM", hours=hours), SCHEDULE_FIX
    days = _days(raw.get("days"))
    if days is None:
        return None, t("days {days!r} are not days mon..sun", days=raw.get("days")), SCHEDULE_FIX
    start, end = hours.split("-")
    if len(days) < len(DAYS) and (start < EARLIEST_WITH_DAYS or end < start):
        return None, t(
            "with days, the window must lie between {earliest} and midnight: the kernel counts "
            "days in UTC", earliest=EARLIEST_WITH_DAYS,
        ), t("split the rule in two, or leave out days")  # fmt: skip
    return Schedule(days if len(days) < len(DAYS) else (), start, end), "", ""


def _days(raw: Any) -> tuple[str, ...] | None:
    """mon-fri, [mon, wed], [mon-wed, sat] or nothing (every day), in week order."""
    if raw is None:
        return DAYS
    parts = [raw] if isinstance(raw, str) else raw
    if not isinstance(parts, list) or not parts:
        return None
    wanted: set[str] = set()
    for part in parts:
        first, _, last = str(part).partition("-")
        last = last or first
        if first not in DAYS or last not in DAYS or DAYS.index(last) < DAYS.index(first):
            return None
        wanted.update(DAYS[DAYS.index(first) : DAYS.index(last) + 1])
    return tuple(d for d in DAYS if d in wanted)


def _day_spans(days: tuple[str, ...]) -> str:
    """mon-fri, sat for ('mon', ..., 'fri', 'sat'); '' for every day."""
    spans: list[list[str]] = []
    for day in days:
        if spans and DAYS.index(day) == DAYS.index(spans[-1][-1]) + 1:
            spans[-1].append(day)
        else:
            spans.append([day])
    return ", ".join(s[0] if len(s) == 1 else f"{s[0]}-{s[-1]}" for s in spans)


def _teleworker_groups(p: Parser, raw: Any) -> dict[str, TeleworkerGroup]:
    path: Path_ = ("kastro_teleworker_groups",)
    m = p.mapping(raw, path, t("one entry per group"))
    if m is None:
        return {}
    out: dict[str, TeleworkerGroup] = {}
    for gname, graw in m.items():
        gpath: Path_ = (*path, gname)
        if check_name(str(gname)):
            p.src.error(
                gpath, t("'{name}' is not a valid group name", name=shown(str(gname))), NAME_FIX
            )
            continue
        if reserved(p, gpath, str(gname), t("teleworker group")):
            continue
        g = p.mapping(graw if graw is not None else {}, gpath, "description, pool_size")
        if g is None:
            continue
        got = p.read(g, gpath, TELEWORKER_GROUP_FIELDS)
        description, pool = got["description"], got["pool_size"]
        if pool:
            out[gname] = TeleworkerGroup(gname, description or "", pool)
    return out


def _teleworkers(p: Parser, raw: Any) -> list[Teleworker]:
    path: Path_ = ("kastro_teleworkers",)
    if not isinstance(raw, list):
        p.src.error(
            path,
            t("must be a list of people, not {kind}", kind=_kind(raw)),
            t("write each teleworker as '- id: ...' with name:, group:"),
        )
        return []
    out: list[Teleworker] = []
    for i, traw in enumerate(raw):
        tpath: Path_ = (*path, i)
        person = p.mapping(traw, tpath, "id, name, group")
        if person is None:
            continue
        got = p.read(person, tpath, TELEWORKER_FIELDS)
        tid, name, group, key, state = (
            got[k] for k in ("id", "name", "group", "public_key", "state")
        )
        if tid and name and group and state and (key is not None or "public_key" not in person):
            out.append(Teleworker(tid, name, group, key, state))
    return out


def interface_label(links: Mapping[str, Iterable[str]], name: str, here: str) -> tuple[bool, str]:
    """What a gateway names its interface for link `name` after: (False, the building at the
    other end), or, for a second link between the same two buildings (a backup radio beside a
    fibre), (True, the link's own name). Of such links the one whose name sorts first keeps
    the building's name, so adding hall-kep-radio beside hall-kep renames nothing. Link names
    are unique, building names too; the caller's prefix tells the kinds apart (wl-kep,
    wp-hall-kep-radio)."""
    ends = frozenset(links[name])
    twins = sorted(n for n, other in links.items() if frozenset(other) == ends)
    if twins[0] != name:
        return True, name
    return False, next(b for b in ends if b != here)


# --- kastro_backup ----------------------------------------------------------------------------
# systemd OnCalendar expressions on one line: weekdays, dates, times, ranges and lists.
CALENDAR_RE = re.compile(r"[A-Za-z0-9*:,./~ -]{1,64}")
# A path Kastro hands to borg and writes into configs: absolute, plain characters, no '..'.
BACKUP_PATH_RE = re.compile(r"(/[A-Za-z0-9._-]+)+")
DATABASE_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RETENTION_KEYS = ("within_days", "daily", "weekly", "monthly", "yearly")
# The controller's backup: a dataset of this name, its repository under this pseudo-host.
CONTROLLER_DATASET, CONTROLLER_HOST = "controller", "kastro-controller"


def _calendar(value: str) -> str | None:
    return (
        None
        if CALENDAR_RE.fullmatch(value)
        else t("{value!r} is not a systemd calendar time", value=value)
    )


def backup_path_problem(value: str) -> str | None:
    if not BACKUP_PATH_RE.fullmatch(value) or ".." in value.split("/"):
        return t("{value!r} is not an absolute path of letters, digits and . _ - /", value=value)
    return None


CALENDAR_FIX = t("write a systemd calendar time, e.g. '*-*-* 01:30:00' or 'Sun *-*-* 05:00:00'")
BACKUP_FIELDS: Fields = {
    "server": Field(str, fix=t("name the server that keeps the repositories, e.g. server: vault")),
    "path": Field(
        str, "/srv/kastro-backup", backup_path_problem,
        t("the repositories' directory on the server, e.g. /srv/kastro-backup"),
    ),
    "schedule": Field(str, "*-*-* 01:30:00", _calendar, CALENDAR_FIX),
    "drill": Field(str, "Sun *-*-* 05:00:00", _calendar, CALENDAR_FIX),
    "maintenance": Field(str, "*-*-* 07:00:00", _calendar, CALENDAR_FIX),
    "check_days": Field(
        int, 7, in_range(1, 28),
        t("how often (days) the server checks every chunk of each repository, 1..28"),
    ),
    "retention": Field(dict, {"daily": 7, "weekly": 4, "monthly": 6}),
    "allow_same_building": Field(bool, False),
    "controller": Field(dict, None),
    "datasets": Field(
        dict, fix=t("list what to back up, e.g. datasets: {{shares: {{host: fileserver, "
                    "paths: [/srv/shares]}}}}"),
    ),
}  # fmt: skip
DATASET_FIELDS: Fields = {
    "host": Field(str, fix=t("name the server or sensor that holds the data")),
    "paths": Field(list, [], fix=t("list absolute paths, e.g. [/srv/shares]")),
    "postgresql": Field(list, [], fix=t("list PostgreSQL database names, e.g. [intranet]")),
    "rpo_hours": Field(
        int, 26, in_range(1, 8760),
        t("the most data (hours) this dataset may lose, 1..8760: a backup is due within it"),
    ),
    "description": Field(str, ""),
}  # fmt: skip


def _backup(p: Parser, raw: Any) -> Backup | None:
    path: Path_ = ("kastro_backup",)
    m = p.mapping(raw, path, t("the backup server, schedules and datasets"))
    if m is None:
        return None
    got = p.read(m, path, BACKUP_FIELDS)
    retention = _retention(p, got["retention"])
    datasets: dict[str, Dataset] = {}
    raw_sets = got["datasets"] if isinstance(got["datasets"], dict) else {}
    for name, entry in raw_sets.items():
        dataset = _dataset(p, str(name), entry)
        if dataset is not None:
            datasets[dataset.name] = dataset
    if any(got[k] is None for k in BACKUP_FIELDS):
        return None
    # A bad retention is reported above; the datasets are still checked against the hosts.
    controller = _controller(p, got["controller"]) if got["controller"] is not None else None
    return Backup(
        got["server"], got["path"], got["schedule"], got["drill"], got["maintenance"],
        got["check_days"], retention or {}, datasets, got["allow_same_building"], controller,
    )  # fmt: skip


CONTROLLER_FIELDS: Fields = {
    "paths": Field(
        list, [], fix=t("list further absolute paths on the controller, e.g. [/etc/kastro]")
    ),
    "rpo_hours": DATASET_FIELDS["rpo_hours"],
}  # fmt: skip


def _controller(p: Parser, raw: dict[str, Any]) -> Dataset | None:
    path: Path_ = ("kastro_backup", "controller")
    got = p.read(raw, path, CONTROLLER_FIELDS)
    paths = _checked_list(p, got["paths"], (*path, "paths"), backup_path_problem,
                          t("write each as an absolute path, e.g. /srv/shares"))  # fmt: skip
    if paths is None or got["rpo_hours"] is None:
        return None
    return Dataset(CONTROLLER_DATASET, CONTROLLER_HOST, paths, (), got["rpo_hours"],
                   t("the controller's state"))  # fmt: skip


def _retention(p: Parser, raw: dict[str, Any] | None) -> dict[str, int] | None:
    path: Path_ = ("kastro_backup", "retention")
    if raw is None:
        return None
    p.fields(raw, path, RETENTION_KEYS)
    keep: dict[str, int] = {}
    for key in RETENTION_KEYS:
        value = p.get(raw, path, key, int, 0, in_range(0, 1000),
                      t("how many {key} archives to keep, 0..1000 (0: none)", key=key))  # fmt: skip
        if value is None:
            return None
        if value:
            keep[key] = value
    if not keep and not set(raw) - set(RETENTION_KEYS):
        p.src.error(path, t("keeps no archive"), t("keep at least one, e.g. {{daily: 7}}"))
        return None
    return keep


def _dataset(p: Parser, name: str, raw: Any) -> Dataset | None:
    path: Path_ = ("kastro_backup", "datasets", name)
    problem = check_name(name)
    if problem:
        p.src.error(path, problem, NAME_FIX)
        return None
    if name == CONTROLLER_DATASET:
        fix = t("rename it; back the controller up with kastro_backup.controller")
        p.src.error(path, t("is the name of the controller's own dataset"), fix)
        return None
    m = p.mapping(raw, path, t("host, paths and databases"))
    if m is None:
        return None
    got = p.read(m, path, DATASET_FIELDS)
    paths = _checked_list(p, got["paths"], (*path, "paths"), backup_path_problem,
                          t("write each as an absolute path, e.g. /srv/shares"))  # fmt: skip
    databases = _checked_list(
        p, got["postgresql"], (*path, "postgresql"),
        _database_problem,
        t("PostgreSQL database names: lower-case letters, digits and _"),
    )  # fmt: skip
    if got["paths"] == [] and got["postgresql"] == []:
        p.src.error(path, t("backs up nothing"), t("give paths, postgresql, or both"))
        return None
    if None in (got["host"], got["rpo_hours"], paths, databases):
        return None
    assert paths is not None and databases is not None
    return Dataset(name, got["host"], paths, databases, got["rpo_hours"], got["description"] or "")


def _database_problem(value: str) -> str | None:
    if DATABASE_RE.fullmatch(value):
        return None
    return t("{value!r} is not a database name", value=value)


def _checked_list(
    p: Parser, raw: list[Any] | None, path: Path_, problem: Callable[[str], str | None], fix: str
) -> tuple[str, ...] | None:
    if raw is None:
        return None
    out: list[str] = []
    for i, item in enumerate(raw):
        found = problem(item) if isinstance(item, str) else t("must be text")
        if found:
            p.src.error((*path, i), found, fix)
        elif item in out:
            p.src.error((*path, i), t("is listed twice"), t("remove the second one"))
        else:
            out.append(item)
    return tuple(out) if len(out) == len(raw) else None


# --- kastro_published -------------------------------------------------------------------------
# Services of the municipality's hosts that the internet reaches on a public address of an
# uplink (the gateway forwards them: DNAT). Checked against the uplinks and zones in validate.
PUBLISHED_RATE_RE = re.compile(r"[1-9][0-9]{0,5}/(second|minute)")
OWN = "own"
PUBLISHED_FIELDS: Fields = {
    "host": Field(str, fix=t("name the server (or device) that offers the service, e.g. "
                             "host: intranet")),
    "services": Field(list, fix=t("list services of kastro_services, e.g. services: [web]")),
    "ipv4": Field(None),
    "ipv6": Field(None),
    "from": Field(None),
    "rate": Field(
        str, "",
        lambda v: None if PUBLISHED_RATE_RE.fullmatch(v) else t("{value!r} is not a rate",
                                                                value=v),
        t("new connections one source may open, e.g. rate: 20/second (or /minute)"),
    ),
    "accept_risk": Field(str, ""),
    "comment": Field(str, ""),
}  # fmt: skip


def _published(p: Parser, raw: Any) -> dict[str, Published]:
    m = p.mapping(raw, ("kastro_published",), t("published services by name"))
    out: dict[str, Published] = {}
    for name, entry in (m or {}).items():
        path: Path_ = ("kastro_published", str(name))
        problem = check_name(str(name))
        if problem:
            p.src.error(path, problem, NAME_FIX)
            continue
        found = _published_entry(p, path, str(name), entry)
        if found is not None:
            out[found.name] = found
    return out


def _published_entry(p: Parser, path: Path_, name: str, raw: Any) -> Published | None:
    m = p.mapping(raw, path, t("host, services and public address"))
    if m is None:
        return None
    got = p.read(m, path, PUBLISHED_FIELDS)
    services = _checked_list(p, got["services"], (*path, "services"),
                             lambda v: check_name(v), NAME_FIX)  # fmt: skip
    ipv4 = _public_address(p, path, m, 4)
    ipv6 = _public_address(p, path, m, 6)
    sources = _published_sources(p, (*path, "from"), m.get("from"))
    if m.get("ipv4") is None and m.get("ipv6") is None:
        fix = t("give ipv4: (an address of an uplink's network), ipv6:, or both")
        p.src.error(path, t("has no public address"), fix)
        return None
    if None in (got["host"], got["rate"], services, ipv4, ipv6, sources):
        return None
    assert services is not None and sources is not None
    return Published(
        name, got["host"], services,
        ipv4 if isinstance(ipv4, netaddr.IPAddress) else None,
        ipv6 if isinstance(ipv6, netaddr.IPAddress) else None,
        ipv6 == OWN, sources, got["rate"], got["accept_risk"], got["comment"],
    )  # fmt: skip


def _public_address(
    p: Parser, path: Path_, raw: dict[str, Any], version: int
) -> netaddr.IPAddress | str | None:
    """The public address of that family: an address, "own" (IPv6: the host's own address),
    "" when not given; None after an error."""
    key = f"ipv{version}"
    text = raw.get(key)
    if text is None:
        return ""
    if version == 6 and text == OWN:
        return OWN
    address = _plain_address(text, version)
    if address is None:
        example = "198.51.100.3" if version == 4 else "2001:db8:100::3 (or own)"
        p.src.error((*path, key), t("{value!r} is not an IPv{version} address", value=text,
                                    version=version),
                    t("write one public address without prefix, e.g. {key}: {example}",
                      key=key, example=example))  # fmt: skip
    return address


def _published_sources(p: Parser, path: Path_, raw: Any) -> tuple[netaddr.IPNetwork, ...] | None:
    """`from`: the internet addresses allowed (CIDR networks); empty: everyone."""
    fix = t("list the networks allowed, e.g. from: [203.0.113.7/32]")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        p.src.error(path, t("must be a list of networks"), fix)
        return None
    out: list[netaddr.IPNetwork] = []
    for i, text in enumerate(raw):
        net, problem = parse_network(text)
        if net is None:
            p.src.error((*path, i), problem, fix)
        else:
            out.append(net)
    return tuple(out) if len(out) == len(raw) else None
