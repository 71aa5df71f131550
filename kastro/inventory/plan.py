"""The address plan: every subnet and address Kastro uses, derived with netaddr.

Allocations are stable. The previous plan (committed beside the model) is read first and
every allocation whose owner still exists and still fits is kept as it is; only new
elements get new space. Zones and VPN pools fill the supernet from the bottom,
point-to-point links and router ids from the top, so neither eats the other's room to grow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import netaddr

from kastro.i18n import t
from kastro.inventory.loader import Source
from kastro.inventory.model import INTERNET_MEDIUM, Host, Model, Zone
from kastro.inventory.validate import WIREGUARD_OVERHEAD, internet_hub, needed_prefix

PLAN_VERSION = 1
V6_ZONE_PREFIX = 64


class Pool:
    """Free space of one address family, taken in aligned blocks."""

    def __init__(self, supernets: tuple[netaddr.IPNetwork, ...]) -> None:
        self.supernets = supernets
        self.free = netaddr.IPSet(supernets)

    def contains(self, net: netaddr.IPNetwork) -> bool:
        return any(net in s for s in self.supernets)

    def is_free(self, net: netaddr.IPNetwork) -> bool:
        return bool(netaddr.IPSet([net]).issubset(self.free))

    def reserve(self, net: netaddr.IPNetwork) -> None:
        self.free.remove(net)

    def take(self, prefixlen: int, from_top: bool = False) -> netaddr.IPNetwork | None:
        blocks = sorted(self.free.iter_cidrs(), key=lambda c: c.first, reverse=from_top)
        for block in blocks:
            if block.prefixlen > prefixlen:
                continue
            size = 1 << ((32 if block.version == 4 else 128) - prefixlen)
            first = block.last - size + 1 if from_top else block.first
            net = netaddr.IPNetwork(f"{netaddr.IPAddress(first, block.version)}/{prefixlen}")
            self.reserve(net)
            return net
        return None


@dataclass
class PlanResult:
    data: dict[str, Any]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # "hosts.fileserver ipv4 OLD -> NEW"


# Every section of the plan ("devices" only when a device asks for a fixed address).
PLAN_SECTIONS = ("zones", "links", "router_ids", "vpn_pools", "hosts", "devices", "teleworkers")


def _net(value: Any) -> netaddr.IPNetwork | None:
    try:
        return netaddr.IPNetwork(str(value)) if value else None
    except (netaddr.AddrFormatError, ValueError):
        return None


def _old(previous: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    entry = (previous.get(section) or {}).get(key)
    return entry if isinstance(entry, dict) else {}


def make_plan(
    model: Model,
    src: Source,
    previous: dict[str, Any] | None = None,
    renumber: frozenset[str] = frozenset(),
) -> PlanResult | None:
    """Plan every address; on a problem, record errors in ``src`` and return None."""
    assert model.municipality is not None
    alloc = _Allocator(model, src, previous or {}, renumber)
    # 1. What the admin fixed, then what the previous plan already gave out.
    alloc.fixed_zones()
    alloc.keep_previous()
    alloc.check_kept_zones()
    # 2. New allocations, largest first so small blocks do not fragment the space.
    alloc.allocate_new()
    if src.errors:
        return None
    # 3. Write it out in the shape the roles read.
    data: dict[str, Any] = {"version": PLAN_VERSION, "municipality": model.municipality.name}
    data["zones"] = alloc.zones_out()
    data["hosts"], devices = _host_addresses(model, data["zones"], alloc.previous, renumber)
    if devices:  # only when some device asks for a fixed address: other plans stay as they were
        data["devices"] = devices
    data["router_ids"] = alloc.router_ids_out()
    data["links"] = alloc.links_out()
    data["vpn_pools"] = alloc.pools_out()
    teleworkers = _teleworker_addresses(model, data["vpn_pools"], alloc.previous, src)
    if teleworkers is None:
        return None
    data["teleworkers"] = teleworkers
    alloc.result.data = data
    alloc.result.removed = _removed(alloc.previous, data)
    before, after = _given_out(alloc.previous), _given_out(data)
    alloc.result.moved = [
        f"{where} {before[where]} -> {value}"
        for where, value in after.items()
        if before.get(where) not in (None, value)
    ]
    # Given out again (renumbered, or the same block once more): not new.
    alloc.result.added = [a for a in alloc.result.added if a.rsplit(" ", 1)[0] not in before]
    return alloc.result


class _Allocator:
    """The address pools of one planning run and what has been given out of them."""

    def __init__(
        self, model: Model, src: Source, previous: dict[str, Any], renumber: frozenset[str]
    ) -> None:
        assert model.municipality is not None
        self.model, self.src, self.previous, self.renumber = model, src, previous, renumber
        self.result = PlanResult(data={})
        self.v4 = Pool(model.municipality.supernets_v4)
        self.v6 = Pool(model.municipality.supernets_v6) if model.municipality.supernets_v6 else None
        self.zones = sorted(model.zones, key=lambda z: z.key)
        self.groups = sorted(model.teleworker_groups.values(), key=lambda g: g.name)
        self.links = sorted(model.links.values(), key=lambda link: link.name)
        self.gateways = sorted(
            (h for h in model.hosts if h.role == "gateway"), key=lambda h: h.name
        )
        self.zone_v4: dict[str, netaddr.IPNetwork] = {}
        self.kept: dict[tuple[str, str, str], netaddr.IPNetwork] = {}

    def fixed_zones(self) -> None:
        for zone in self.zones:
            if zone.subnet is None:
                continue
            if not self.v4.is_free(zone.subnet):
                self.src.error(
                    _zone_path(zone, "subnet"),
                    t("{subnet} is already in use", subnet=zone.subnet),
                    t("pick a free subnet, or remove subnet to let 'kastro apply' choose"),
                )
                continue
            self.v4.reserve(zone.subnet)
            self.zone_v4[zone.key] = zone.subnet

    def keep(
        self, section: str, key: str, family: str, pool: Pool | None, prefixlen: int | None
    ) -> None:
        """Reserve the previous plan's block again (any size when prefixlen is None)."""
        if pool is None or f"kastro_plan.{section}.{key}" in self.renumber:
            return
        net = _net(_old(self.previous, section, key).get(family))
        if net is None or (prefixlen is not None and net.prefixlen != prefixlen):
            return
        if pool.contains(net) and pool.is_free(net):
            pool.reserve(net)
            self.kept[(section, key, family)] = net

    def keep_previous(self) -> None:
        v4, v6 = self.v4, self.v6
        for zone in self.zones:
            if zone.key not in self.zone_v4:
                self.keep("zones", zone.key, "ipv4", v4, None)
            self.keep("zones", zone.key, "ipv6", v6, V6_ZONE_PREFIX)
        for group in self.groups:
            self.keep("vpn_pools", group.name, "ipv4", v4, pool_prefix(group.pool_size))
            self.keep("vpn_pools", group.name, "ipv6", v6, V6_ZONE_PREFIX)
        for link in self.links:
            self.keep("links", link.name, "ipv4", v4, 31)
            self.keep("links", link.name, "ipv6", v6, 127)
        for gw in self.gateways:
            self.keep("router_ids", gw.name, "ipv4", v4, 32)
            self.keep("router_ids", gw.name, "ipv6", v6, 128)

    def check_kept_zones(self) -> None:
        """A kept zone block that no longer holds the zone is an error, never a silent
        renumbering."""
        for zone in self.zones:
            held = self.kept.get(("zones", zone.key, "ipv4"))
            if held is None:
                continue
            if held.size - 3 < zone.hosts:
                self.src.error(
                    _zone_path(zone, "hosts"),
                    t(
                        "needs {hosts} addresses but its planned block {held} has {room}",
                        hosts=zone.hosts,
                        held=held,
                        room=held.size - 3,
                    ),
                    t(
                        "renumber the zone: kastro apply -i INVENTORY --renumber "
                        "kastro_plan.zones.{key} (its devices get new addresses)",
                        key=zone.key,
                    ),
                )
            self.zone_v4[zone.key] = held

    def new(
        self,
        where: tuple[str, str, str],
        pool: Pool | None,
        prefixlen: int,
        top: bool,
        path: tuple[str | int, ...],
    ) -> netaddr.IPNetwork | None:
        """The kept block for (section, key, family), or a new one from the pool."""
        if pool is None:
            return None
        got = self.kept.get(where)
        if got is not None:
            return got
        got = pool.take(prefixlen, from_top=top)
        if got is None:
            self.src.error(
                ("kastro_municipality", "supernets"),
                t(
                    "has no room left for {what} (an IPv{version} /{prefixlen})",
                    what=".".join(str(p) for p in path),
                    version=pool.supernets[0].version,
                    prefixlen=prefixlen,
                ),
                t("add a larger supernet, or make zones smaller"),
            )
            return None
        self.kept[where] = got
        section, key, family = where
        self.result.added.append(f"{section}.{key} {family} {got}")
        return got

    def zone_prefix(self, zone: Zone) -> int:
        """A new zone's IPv4 prefix: its devices and the municipality's room to grow."""
        assert self.model.municipality is not None
        return needed_prefix(
            with_headroom(zone.hosts, self.model.municipality.zone_headroom_percent)
        )

    def allocate_new(self) -> None:
        v4, v6 = self.v4, self.v6
        path: tuple[str | int, ...]
        for zone in sorted(self.zones, key=lambda z: (self.zone_prefix(z), z.key)):
            if zone.key not in self.zone_v4:
                got = self.new(
                    ("zones", zone.key, "ipv4"),
                    v4,
                    self.zone_prefix(zone),
                    False,
                    _zone_path(zone, "hosts"),
                )
                if got is not None:
                    self.zone_v4[zone.key] = got
        for group in self.groups:
            path = ("kastro_teleworker_groups", group.name)
            self.new(
                ("vpn_pools", group.name, "ipv4"), v4, pool_prefix(group.pool_size), False, path
            )
        for zone in self.zones:
            self.new(
                ("zones", zone.key, "ipv6"), v6, V6_ZONE_PREFIX, False, _zone_path(zone, "hosts")
            )
        for group in self.groups:
            path = ("kastro_teleworker_groups", group.name)
            self.new(("vpn_pools", group.name, "ipv6"), v6, V6_ZONE_PREFIX, False, path)
        for gw in self.gateways:
            path = ("kastro_buildings", gw.building, "hosts", gw.name)
            self.new(("router_ids", gw.name, "ipv4"), v4, 32, True, path)
            self.new(("router_ids", gw.name, "ipv6"), v6, 128, True, path)
        for link in self.links:
            path = ("kastro_links", link.name)
            self.new(("links", link.name, "ipv4"), v4, 31, True, path)
            self.new(("links", link.name, "ipv6"), v6, 127, True, path)

    def zones_out(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for zone in self.zones:
            net4 = self.zone_v4[zone.key]
            entry: dict[str, Any] = {
                "building": zone.building,
                "kind": zone.kind,
                "hosts": zone.hosts,
                "ipv4": str(net4.cidr),
                "gateway_ipv4": str(net4[1]),
            }
            net6 = self.kept.get(("zones", zone.key, "ipv6"))
            if net6 is not None:
                entry["ipv6"] = str(net6)
                entry["gateway_ipv6"] = str(net6[1])
            out[zone.key] = entry
        return out

    def router_ids_out(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gw in self.gateways:
            entry = {"ipv4": str(self.kept[("router_ids", gw.name, "ipv4")].ip)}
            if self.v6 is not None:
                entry["ipv6"] = str(self.kept[("router_ids", gw.name, "ipv6")].ip)
            out[gw.name] = entry
        return out

    def links_out(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for link in self.links:
            net4 = self.kept[("links", link.name, "ipv4")]
            net6 = self.kept.get(("links", link.name, "ipv6")) if self.v6 is not None else None
            ends: dict[str, Any] = {}
            for i, building in enumerate(link.ends):
                gateway = self.model.gateway(building)
                end = {"gateway": gateway.name if gateway else None, "ipv4": str(net4[i])}
                if net6 is not None:
                    end["ipv6"] = str(net6[i])
                ends[building] = end
            entry: dict[str, Any] = {
                "ipv4": str(net4),
                "ends": ends,
                "medium": link.medium,
                "capacity_mbps": link.capacity_mbps,
                "cost": link.cost,
                "encrypted": link.encrypted,
                "mtu": link.mtu,
                # What fits inside the tunnel without fragmenting the outer packet.
                "inner_mtu": link.mtu - WIREGUARD_OVERHEAD if link.encrypted else link.mtu,
            }
            if net6 is not None:
                entry["ipv6"] = str(net6)
            if link.medium == INTERNET_MEDIUM:
                entry["hub"] = internet_hub(self.model, link)
            out[link.name] = entry
        return out

    def pools_out(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group in self.groups:
            net4 = self.kept[("vpn_pools", group.name, "ipv4")]
            entry = {"ipv4": str(net4), "server_ipv4": str(net4[1])}
            net6 = self.kept.get(("vpn_pools", group.name, "ipv6"))
            if net6 is not None:
                entry["ipv6"] = str(net6)
                entry["server_ipv6"] = str(net6[1])
            out[group.name] = entry
        return out


MIN_SPARE_DEVICES = 4


def with_headroom(hosts: int, percent: int) -> int:
    """Devices a new zone's block is sized for: `percent` more (rounded up, at least
    MIN_SPARE_DEVICES more), or exactly `hosts` when percent is 0."""
    if percent == 0:
        return hosts
    return hosts + max(-(-hosts * percent // 100), MIN_SPARE_DEVICES)


def pool_prefix(size: int) -> int:
    """IPv4 prefix of a VPN pool of ``size`` addresses (a power of two): 64 -> /26."""
    return 33 - size.bit_length()


def _zone_path(zone: Zone, fieldname: str) -> tuple[str, ...]:
    return ("kastro_buildings", zone.building, "zones", zone.name, fieldname)


def _offset_address(net6: str | None, offset: int) -> str | None:
    """The IPv6 address with the same host number as the IPv4 one (10.20.1.10 -> ...:a)."""
    return str(netaddr.IPNetwork(net6)[offset]) if net6 else None


class _Seat(NamedTuple):
    """Something with an address of its own in a zone: a host, or a device with
    fixed_address."""

    name: str
    section: str  # hosts, devices
    key: str  # BUILDING.ZONE
    address: netaddr.IPAddress | None


def _seats(model: Model) -> list[_Seat]:
    hosts = [
        _Seat(h.name, "hosts", f"{h.building}.{h.zone}", h.address)
        for h in sorted(model.hosts, key=lambda h: h.name)
        if h.role != "gateway" and h.zone
    ]
    devices = [
        _Seat(d.name, "devices", f"{d.building}.{d.zone}", None)
        for b in sorted(model.buildings.values(), key=lambda b: b.name)
        for d in sorted(b.devices.values(), key=lambda d: d.name)
        if d.fixed_address
    ]
    return hosts + devices  # hosts first: a new device never takes a new server's address


def _host_addresses(
    model: Model, zones: dict[str, Any], previous: dict[str, Any], renumber: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every host's plan entry (a gateway's address in each zone, a host's own address), and
    every device's that asks for a fixed address.

    Fixed addresses first, then addresses from the previous plan, then new ones."""
    seats = _seats(model)
    used: dict[str, set[int]] = {key: {0, 1} for key in zones}  # network and gateway
    wanted: dict[str, int] = {}
    for pick in (_fixed_offset, _previous_offset, _free_offset):
        for seat in seats:
            if seat.name in wanted:
                continue
            net = netaddr.IPNetwork(zones[seat.key]["ipv4"])
            offset = pick(seat, net, used[seat.key], previous, renumber)
            if offset is not None:
                wanted[seat.name] = offset
                used[seat.key].add(offset)
    hosts = {
        host.name: _host_entry(model, host, zones, wanted)
        for host in sorted(model.hosts, key=lambda h: h.name)
    }
    devices = {
        seat.name: _seat_entry(seat, zones, wanted[seat.name])
        for seat in seats
        if seat.section == "devices"
    }
    return hosts, devices


def _fixed_offset(seat: _Seat, net: netaddr.IPNetwork, *_: Any) -> int | None:
    return int(seat.address) - net.first if seat.address is not None else None


def _previous_offset(
    seat: _Seat,
    net: netaddr.IPNetwork,
    used: set[int],
    previous: dict[str, Any],
    renumber: frozenset[str],
) -> int | None:
    old = _old(previous, seat.section, seat.name)
    if old.get("zone") != seat.key or f"kastro_plan.{seat.section}.{seat.name}" in renumber:
        return None
    try:
        offset = int(netaddr.IPAddress(old["ipv4"])) - net.first
    except (KeyError, netaddr.AddrFormatError, ValueError, TypeError):
        return None
    return offset if 1 < offset < net.size - 1 and offset not in used else None


def _free_offset(seat: _Seat, net: netaddr.IPNetwork, used: set[int], *_: Any) -> int | None:
    """Servers and sensors start at .10, leaving the first addresses for network gear;
    small zones wrap around to .2. Validation guarantees a free address exists."""
    size = int(net.size)
    start = min(10, size - 2)
    candidates = [*range(start, size - 1), *range(2, start)]
    free: int = next(i for i in candidates if i not in used)
    return free


def _seat_entry(seat: _Seat, zones: dict[str, Any], offset: int) -> dict[str, Any]:
    net = netaddr.IPNetwork(zones[seat.key]["ipv4"])
    entry = {"zone": seat.key, "ipv4": str(net[offset])}
    v6 = _offset_address(zones[seat.key].get("ipv6"), offset)
    if v6:
        entry["ipv6"] = v6
    return entry


def _host_entry(
    model: Model, host: Host, zones: dict[str, Any], wanted: dict[str, int]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"building": host.building, "role": host.role}
    if host.role == "gateway":
        entry["interfaces"] = {
            z.name: {
                "ipv4": zones[z.key]["gateway_ipv4"],
                **(
                    {"ipv6": zones[z.key]["gateway_ipv6"]} if "gateway_ipv6" in zones[z.key] else {}
                ),
            }
            for z in sorted(model.buildings[host.building].zones.values(), key=lambda z: z.name)
        }
        return entry
    return entry | _seat_entry(
        _Seat(host.name, "hosts", f"{host.building}.{host.zone}", None), zones, wanted[host.name]
    )


def wireguard_limit(pool: netaddr.IPNetwork) -> int:
    """First offset in a group's pool that a teleworker's WireGuard address may not have.

    Offset 0 is the network and 1 the server; the upper half is OpenVPN's, which gives each
    person their WireGuard offset plus half and keeps its own server at half + 1, so
    WireGuard offsets end before half - 1."""
    return int(pool.size) // 2 - 1


def _teleworker_addresses(
    model: Model, pools: dict[str, Any], previous: dict[str, Any], src: Source
) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    used: dict[str, set[int]] = {g: {0, 1} for g in pools}  # network, server
    people = [t for t in model.teleworkers if t.group in pools]
    offsets: dict[str, int] = {}
    for person in people:  # keep what the previous plan gave, in the same group
        old = _old(previous, "teleworkers", person.id)
        if old.get("group") != person.group:
            continue
        net = netaddr.IPNetwork(pools[person.group]["ipv4"])
        try:
            offset = int(netaddr.IPAddress(old["ipv4"])) - net.first
        except (KeyError, netaddr.AddrFormatError, ValueError, TypeError):
            continue
        if 1 < offset < wireguard_limit(net) and offset not in used[person.group]:
            offsets[person.id] = offset
            used[person.group].add(offset)
    for index, person in enumerate(model.teleworkers):
        if person.group not in pools or person.id in offsets:
            continue
        net = netaddr.IPNetwork(pools[person.group]["ipv4"])
        free = [i for i in range(2, wireguard_limit(net)) if i not in used[person.group]]
        if not free:
            src.error(
                ("kastro_teleworkers", index, "group"),
                t(
                    "group '{group}' has no free VPN address: its pool {net} holds "
                    "{people} people (WireGuard uses the lower half, OpenVPN the upper "
                    "half)",
                    group=person.group,
                    net=net,
                    people=wireguard_limit(net) - 2,
                ),
                t("raise kastro_teleworker_groups.{group}.pool_size", group=person.group),
            )
            continue
        offsets[person.id] = free[0]
        used[person.group].add(free[0])
    if src.errors:
        return None
    for person in sorted(people, key=lambda t: t.id):
        pool = pools[person.group]
        entry: dict[str, Any] = {
            "group": person.group,
            "state": person.state,
            "ipv4": str(netaddr.IPNetwork(pool["ipv4"])[offsets[person.id]]),
        }
        v6 = _offset_address(pool.get("ipv6"), offsets[person.id])
        if v6:
            entry["ipv6"] = v6
        out[person.id] = entry
    return out


def _addresses(entry: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path family, value) of every ipv4/ipv6 in a plan entry, nested ones (a gateway's
    interfaces) included."""
    if not isinstance(entry, dict):
        return
    for key, value in sorted(entry.items()):
        if key in ("ipv4", "ipv6") and value:
            yield f"{path} {key}", str(value)
        elif isinstance(value, dict):
            yield from _addresses(value, f"{path}.{key}")


def _given_out(plan: dict[str, Any]) -> dict[str, str]:
    """Every address and block of a plan, "section.key[.nested] family" -> value, in the
    plan's section order and each section's key order: what a renumbering compares."""
    return {
        where: value
        for section in PLAN_SECTIONS
        for key, entry in sorted((plan.get(section) or {}).items())
        for where, value in _addresses(entry, f"{section}.{key}")
    }


def _removed(previous: dict[str, Any], data: dict[str, Any]) -> list[str]:
    gone = []
    for section in PLAN_SECTIONS:
        old = previous.get(section) or {}
        for key in sorted(old):
            if key not in data.get(section, {}):
                gone.append(f"{section}.{key}")
    return gone


def runs_vpn(role: str, city_hall: bool, teleworker_groups: int) -> bool:
    """The rule for who terminates the teleworkers' VPN: the city-hall gateway, when the
    municipality has teleworker groups. `kastro apply` uses it for the telework_servers group,
    the per-host state (kastro.controller.state) for the roles."""
    return role == "gateway" and city_hall and teleworker_groups > 0


def management_address(plan: Mapping[str, Any], host: str) -> str:
    """The address a host's own services (exporters) listen on: a gateway's address in its
    building's management zone (its router id, on the loopback, where the building has
    none), a server's or sensor's own address. 127.0.0.1 for a host the plan does not know."""
    entry = (plan.get("hosts") or {}).get(host) or {}
    if entry.get("role") == "gateway":
        management = (entry.get("interfaces") or {}).get("management") or {}
        router = (plan.get("router_ids") or {}).get(host) or {}
        return str(management.get("ipv4") or router.get("ipv4") or "127.0.0.1")
    return str(entry.get("ipv4") or "127.0.0.1")


def host_addresses(plan: Mapping[str, Any], host: str) -> list[str]:
    """Every address the plan gives `host`: a server's or sensor's own, a gateway's in each of
    its zones, at each end of its links and its router id. A gateway's connection leaves from
    whichever of them the route chooses, so whoever identifies it by its source address needs
    them all (they are unique within the plan)."""
    entry = (plan.get("hosts") or {}).get(host) or {}
    found = [entry.get("ipv4"), entry.get("ipv6")]
    for interface in (entry.get("interfaces") or {}).values():
        found += [interface.get("ipv4"), interface.get("ipv6")]
    if entry.get("role") == "gateway":
        router = (plan.get("router_ids") or {}).get(host) or {}
        found += [router.get("ipv4"), router.get("ipv6")]
        for link in (plan.get("links") or {}).values():
            for end in (link.get("ends") or {}).values():
                if end.get("gateway") == host:
                    found += [end.get("ipv4"), end.get("ipv6")]
    return list(dict.fromkeys(str(a) for a in found if a))


# Prometheus' and Alertmanager's web ports on a monitoring host (the monitoring role's daemons
# listen there; the firewalls admit them from the management networks).
MONITORING_WEB_PORTS = (9090, 9093)
# The event collector's syslog-over-TLS port (RFC 5425), on kastro_municipality.event_collector.
EVENTS_PORT = 6514
# The backup server's SSH listener of its own (kastro_backup.server): only the backup clients'
# keys, each forced to `borg serve --append-only`; the admins' sshd on port 22 is untouched.
BACKUP_SSH_PORT = 2222


def monitoring_addresses(plan: dict[str, Any], hosts: list[str]) -> list[str]:
    """The planned IPv4 and IPv6 addresses of the monitoring hosts."""
    planned = plan.get("hosts") or {}
    return [
        str(planned[h][family])
        for h in hosts
        if h in planned
        for family in ("ipv4", "ipv6")
        if planned[h].get(family)
    ]
