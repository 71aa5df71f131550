"""Checks that relate parts of the model: names that must exist, overlaps, connectivity."""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

import netaddr

from kastro.i18n import Joined, t
from kastro.inventory.loader import Path_, Source
from kastro.inventory.model import (
    CONTROLLER_HOST,
    INTERNET_MEDIUM,
    UNTRUSTED_MEDIA,
    UPDATES_FIX,
    Building,
    Host,
    Link,
    Model,
    Published,
    Rule,
    Uplink,
)
from kastro.inventory.ports import Nic, port_problems

# WireGuard over IPv6 adds 80 bytes (IPv6 40 + UDP 8 + WireGuard 32); the plan sizes inner MTUs
# from this, so an encrypted link's MTU must leave room for at least IPv6's minimum inside.
WIREGUARD_OVERHEAD = 80
INTERNET = "internet"  # the medium of a link over the internet
TELEWORKER_PREFIX = "teleworkers."
# A Linux interface name: at most 15 bytes (IFNAMSIZ - 1), no '/', ':', quotes or blanks.
IFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
INTERFACE_KEYS = ("zones", "links", "wan", "vpn", "management")
IFACE_FIX = t("write the Linux interface name, e.g. eth1 or enp2s0.20 (at most 15 characters)")


def check_model(model: Model, src: Source) -> None:
    _check_buildings(model, src)
    _check_hosts(model, src)
    _check_ports(model, src)
    _check_register(model, src)
    _check_monitoring_hosts(model, src)
    _check_updates(model, src)
    _check_links(model, src)
    _check_connectivity(model, src)
    _check_fixed_subnets(model, src)
    _check_policy(model, src)
    _check_risk(model, src)
    _check_teleworkers(model, src)
    _check_backup(model, src)
    _check_uplinks(model, src)
    _check_internet_links(model, src)
    _check_published(model, src)


def _check_ports(model: Model, src: Source) -> None:
    """kastro_ports names gateways; each one's ports fit its building (port_problems)."""
    hosts = {h.name: h for h in model.hosts}
    gateways = {h.name for h in model.hosts if h.role == "gateway"}
    for name, ports in model.ports.items():
        if name not in gateways:
            src.error(
                ("kastro_ports", name),
                t("is not a gateway of kastro_buildings"),
                _known(t("gateways"), gateways),
            )
        elif ports:
            _check_gateway_ports(model, src, hosts[name], ports)


def _check_gateway_ports(model: Model, src: Source, host: Host, ports: tuple[Nic, ...]) -> None:
    """Every zone and link of the building on one port, VLAN ids unique per port, bonds of
    real ports, the uplinks on named ports."""
    b = model.buildings[host.building]
    all_uplinks = model.municipality.uplinks if model.municipality else ()
    uplinks = [(i, up) for i, up in enumerate(all_uplinks) if up.building == b.name]
    further = frozenset(up.interface for _, up in uplinks[1:] if up.interface)
    links = {n: link.medium == INTERNET for n, link in model.links.items() if b.name in link.ends}
    for where, message, fix in port_problems(ports, set(b.zones), links, bool(uplinks), further):
        src.error(("kastro_ports", host.name, *where), message, fix)
    names = {nic.name for nic in ports}
    for i, up in uplinks[1:]:
        if up.interface and up.interface not in names:
            src.error(
                ("kastro_municipality", "uplinks", i, "interface"),
                t("'{iface}' is not a port of {host}", iface=up.interface, host=host.name),
                _known(t("ports"), names),
            )


def _check_buildings(model: Model, src: Source) -> None:
    halls = [b.name for b in model.buildings.values() if b.city_hall]
    if model.buildings and not halls:
        src.error(
            ("kastro_buildings",),
            t("has no city hall"),
            t("mark the building with the server room 'city_hall: true'"),
        )
    for extra in halls[1:]:
        src.error(
            ("kastro_buildings", extra, "city_hall"),
            t("a second city hall (the first is '{first}')", first=halls[0]),
            t("only one building can be the city hall; remove city_hall from the others"),
        )
    for b in model.buildings.values():
        if not b.zones:
            src.error(
                ("kastro_buildings", b.name, "zones"),
                t("has no zones"),
                t("give the building at least one zone, e.g. 'staff: {{hosts: 20}}'"),
            )
    if model.municipality:
        for i, up in enumerate(model.municipality.uplinks):
            if up.building not in model.buildings:
                src.error(
                    ("kastro_municipality", "uplinks", i, "building"),
                    t("names unknown building '{name}'", name=up.building),
                    _known(t("buildings"), model.buildings),
                )


def _check_monitoring_hosts(model: Model, src: Source) -> None:
    if model.municipality is None:
        return
    roles = {h.name: h.role for h in model.hosts}
    for i, name in enumerate(model.municipality.monitoring_hosts):
        if roles.get(name) not in ("server", "sensor"):
            src.error(
                ("kastro_municipality", "monitoring_hosts", i),
                t(
                    "'{name}' is not a server or sensor of kastro_buildings (it is a {role})",
                    name=name,
                    role=roles[name],
                )
                if name in roles
                else t("'{name}' is not a server or sensor of kastro_buildings", name=name),
                _known(t("servers"), [h for h, r in roles.items() if r == "server"]),
            )
    collector = model.municipality.event_collector
    if collector and collector not in model.municipality.monitoring_hosts:
        src.error(
            ("kastro_municipality", "event_collector"),
            t(
                "'{name}' is not one of monitoring_hosts (the collector runs on a monitoring host)",
                name=collector,
            ),
            _known(t("monitoring hosts"), list(model.municipality.monitoring_hosts)),
        )


def _check_updates(model: Model, src: Source) -> None:
    """Every managed host needs a path to its security updates: the gateways let nothing out
    that the model does not name, so the model names it (kastro_municipality.updates)."""
    if model.municipality is None or not model.hosts:
        return
    path = ("kastro_municipality", "updates")
    updates = model.municipality.updates
    if updates is None:
        src.error(
            path,
            t(
                "missing: without it the managed hosts have no way through the gateways to"
                " their security updates (they would silently never update)"
            ),
            UPDATES_FIX,
        )
        return
    if bool(updates.cache) == updates.direct:
        src.error(path, t("give exactly one of cache and direct"), UPDATES_FIX)
        return
    servers = [h.name for h in model.hosts if h.role == "server"]
    if updates.cache and updates.cache not in servers:
        src.error(
            (*path, "cache"),
            t("'{name}' is not a server of kastro_buildings", name=updates.cache),
            _known(t("servers"), servers),
        )


def _check_register(model: Model, src: Source) -> None:
    """The asset register's references: services of kastro_services, entities of
    kastro_nis2.entities, a device's zone in its building, one name per host or device."""
    entities = model.nis2.entities if model.nis2 else {}
    hosts = {h.name for h in model.hosts}
    devices: dict[str, str] = {}
    for b in model.buildings.values():
        _check_entity(dict(b.register), entities, ("kastro_buildings", b.name), src)
        items = [("hosts", h.name, h.services, h.register) for h in b.hosts.values()]
        items += [("devices", d.name, d.services, d.register) for d in b.devices.values()]
        for part, name, services, register in items:
            path = ("kastro_buildings", b.name, part, name)
            for i, service in enumerate(services):
                if service not in model.services:
                    src.error(
                        (*path, "services", i),
                        t("names unknown service '{name}'", name=service),
                        _known(t("services"), model.services),
                    )
            _check_entity(dict(register), entities, path, src)
        for d in b.devices.values():
            path = ("kastro_buildings", b.name, "devices", d.name)
            if d.zone not in b.zones:
                src.error((*path, "zone"), t("names unknown zone '{name}'", name=d.zone),
                          _known(t("zones of {building}", building=b.name), b.zones))  # fmt: skip
            if d.name in hosts or d.name in devices:
                problem = (
                    t("'{name}' is also a host's name", name=d.name)
                    if d.name in hosts
                    else t("'{name}' is also a device's name in {building}", name=d.name,
                           building=devices[d.name])
                )  # fmt: skip
                src.error(path, problem, t("give the device a name of its own"))
            devices.setdefault(d.name, b.name)


def _check_entity(
    register: dict[str, str], entities: dict[str, str], path: tuple[str, ...], src: Source
) -> None:
    entity = register.get("legal_entity")
    if entity and entity not in entities:
        src.error(
            (*path, "legal_entity"),
            t("names unknown entity '{name}'", name=entity),
            t("define it in kastro_nis2.entities (e.g. deya: ΔΕΥΑ Κάστρου) or remove the field"),
        )


def _check_zone_sizes(b: Building, src: Source) -> None:
    """Each zone holds at least the hosts and devices placed in it."""
    placed = Counter(h.zone for h in b.hosts.values() if h.zone is not None)
    placed.update(d.zone for d in b.devices.values())
    for zone_name, count in sorted(placed.items()):
        zone = b.zones.get(zone_name)
        if zone is not None and count > zone.hosts:
            src.error(
                ("kastro_buildings", b.name, "zones", zone_name, "hosts"),
                t(
                    "is {hosts} but {count} hosts and devices of kastro_buildings.{building} are "
                    "placed in this zone",
                    hosts=zone.hosts,
                    count=count,
                    building=b.name,
                ),
                t("raise hosts to at least {count} (count every device in the zone)", count=count),
            )


def _check_hosts(model: Model, src: Source) -> None:
    seen: dict[str, str] = {}
    for b in model.buildings.values():
        gateways = [h.name for h in b.hosts.values() if h.role == "gateway"]
        if not gateways:
            src.error(
                ("kastro_buildings", b.name, "hosts"),
                t("has no gateway"),
                t(
                    "add the building's firewall/router, e.g. '{building}-gw: {{role: gateway}}'",
                    building=b.name,
                ),
            )
        for extra in gateways[1:]:
            src.error(
                ("kastro_buildings", b.name, "hosts", extra, "role"),
                t(
                    "is a second gateway in {building} (the first is '{first}')",
                    building=b.name,
                    first=gateways[0],
                ),
                t("each building has one gateway; give this host another role"),
            )
        _check_zone_sizes(b, src)
        for h in b.hosts.values():
            hpath = ("kastro_buildings", b.name, "hosts", h.name)
            if h.name in seen:
                src.error(
                    hpath,
                    t(
                        "host name '{name}' is also used in building '{building}'",
                        name=h.name,
                        building=seen[h.name],
                    ),
                    t("host names are unique across the municipality; rename one"),
                )
            seen.setdefault(h.name, b.name)
            if h.zone is not None and h.zone not in b.zones:
                src.error(
                    (*hpath, "zone"),
                    t("names unknown zone '{name}' of {building}", name=h.zone, building=b.name),
                    _known(t("zones of {building}", building=b.name), b.zones),
                )
            elif h.address is not None and h.zone is not None:
                zone = b.zones[h.zone]
                if zone.subnet is None:
                    src.error(
                        (*hpath, "address"),
                        t(
                            "is fixed but zone {zone} has no fixed subnet",
                            zone=".".join((b.name, h.zone)),
                        ),
                        t("fix the zone's subnet too, or remove the address"),
                    )
                elif h.address not in zone.subnet or h.address in (
                    zone.subnet.network,
                    zone.subnet.broadcast,
                    zone.subnet[1],
                ):
                    src.error(
                        (*hpath, "address"),
                        t(
                            "{address} is not a usable host address of {subnet}",
                            address=h.address,
                            subnet=zone.subnet,
                        ),
                        t(
                            "pick an address from {low} to {high}",
                            low=zone.subnet[2],
                            high=zone.subnet[-2],
                        ),
                    )


def _check_links(model: Model, src: Source) -> None:
    for link in model.links.values():
        lpath = ("kastro_links", link.name)
        for i, end in enumerate(link.ends):
            if end not in model.buildings:
                src.error(
                    (*lpath, "ends", i),
                    t("names unknown building '{name}'", name=end),
                    _known(t("buildings"), model.buildings),
                )
        if link.ends[0] == link.ends[1]:
            src.error(
                (*lpath, "ends"),
                t("joins {building} to itself", building=link.ends[0]),
                t("a link joins two different buildings"),
            )
        if link.medium in UNTRUSTED_MEDIA and not link.encrypted:
            src.error(
                (*lpath, "encrypted"),
                t(
                    "is false on a {medium} link, which the municipality does not own",
                    medium=link.medium,
                ),
                t("set encrypted: true (WireGuard between the gateways)"),
            )
        if link.encrypted and link.mtu - WIREGUARD_OVERHEAD < 1280:
            src.error(
                (*lpath, "mtu"),
                t(
                    "{mtu} leaves {inside} bytes inside WireGuard, below IPv6's minimum of 1280",
                    mtu=link.mtu,
                    inside=link.mtu - WIREGUARD_OVERHEAD,
                ),
                t("use an MTU of at least {mtu} on encrypted links", mtu=1280 + WIREGUARD_OVERHEAD),
            )
    # Parallel links (a backup radio beside a fibre) are links of their own: OSPF prefers the
    # cheaper and fails over to the other; each has its own interfaces (interface_label).


def _check_connectivity(model: Model, src: Source) -> None:
    halls = [b.name for b in model.buildings.values() if b.city_hall]
    if not halls:
        return
    neighbours: dict[str, set[str]] = {b: set() for b in model.buildings}
    for link in model.links.values():
        a, b = link.ends
        if a in neighbours and b in neighbours:
            neighbours[a].add(b)
            neighbours[b].add(a)
    reached = {halls[0]}
    queue = deque(reached)
    while queue:
        for nxt in neighbours[queue.popleft()] - reached:
            reached.add(nxt)
            queue.append(nxt)
    for name in model.buildings:
        if name not in reached:
            src.error(
                ("kastro_buildings", name),
                t("is not connected to the city hall ({hall})", hall=halls[0]),
                t(
                    "add a link in kastro_links from {building} to a connected building",
                    building=name,
                ),
            )


def _check_fixed_subnets(model: Model, src: Source) -> None:
    fixed = [z for z in model.zones if z.subnet is not None]
    supernets = model.municipality.supernets_v4 if model.municipality else ()
    for i, zone in enumerate(fixed):
        assert zone.subnet is not None
        zpath = ("kastro_buildings", zone.building, "zones", zone.name, "subnet")
        if supernets and not any(zone.subnet in s for s in supernets):
            src.error(
                zpath,
                t(
                    "{subnet} is outside the municipality's supernets ({supernets})",
                    subnet=zone.subnet,
                    supernets=", ".join(str(s) for s in supernets),
                ),
                t("pick a subnet inside a supernet, or remove subnet to let 'kastro apply' choose"),
            )
        usable = zone.subnet.size - 3  # network, broadcast, gateway
        if usable < zone.hosts:
            src.error(
                ("kastro_buildings", zone.building, "zones", zone.name, "hosts"),
                t(
                    "needs {hosts} addresses but its subnet {subnet} has {usable}",
                    hosts=zone.hosts,
                    subnet=zone.subnet,
                    usable=max(usable, 0),
                ),
                t(
                    "use a subnet of /{prefix} or larger, or lower hosts",
                    prefix=needed_prefix(zone.hosts),
                ),
            )
        for other in fixed[i + 1 :]:
            assert other.subnet is not None
            if zone.subnet.first <= other.subnet.last and other.subnet.first <= zone.subnet.last:
                src.error(
                    zpath,
                    t(
                        "{subnet} overlaps {zone} ({other})",
                        subnet=zone.subnet,
                        zone=other.key,
                        other=other.subnet,
                    ),
                    t("give each zone its own subnet"),
                )
    _check_supernets(model, src)


def _check_supernets(model: Model, src: Source) -> None:
    if model.municipality:
        nets = [*model.municipality.supernets_v4, *model.municipality.supernets_v6]
        for i, a in enumerate(nets):
            for b in nets[i + 1 :]:
                if a.first <= b.last and b.first <= a.last:
                    src.error(
                        ("kastro_municipality", "supernets"),
                        t("{first} overlaps {second}", first=a, second=b),
                        t("list each address block once, without overlaps"),
                    )
        for net in model.municipality.supernets_v6:
            if net.prefixlen > 56:
                src.error(
                    ("kastro_municipality", "supernets"),
                    t("{net} is too small: every zone needs its own /64", net=net),
                    t("use an IPv6 block of /56 or larger (a /48 is usual)"),
                )


def needed_prefix(hosts: int) -> int:
    """Smallest IPv4 prefix holding ``hosts`` devices plus network, broadcast and gateway."""
    need = hosts + 3
    prefix = 32
    while prefix > 0 and (1 << (32 - prefix)) < need:
        prefix -= 1
    return min(prefix, 30)


def policy_hosts(model: Model) -> dict[str, str]:
    """Hosts and devices a policy rule may name, with their zone (BUILDING.ZONE): every
    non-gateway host, and the devices the plan gives a fixed address."""
    named = {h.name: f"{h.building}.{h.zone}" for h in model.hosts if h.zone}
    for building in model.buildings.values():
        for device in building.devices.values():
            if device.fixed_address:
                named[device.name] = f"{building.name}.{device.zone}"
    return named


def _check_policy(model: Model, src: Source) -> None:
    zone_kinds = {z.kind for z in model.zones}
    zone_keys = {z.key for z in model.zones}
    hosts = policy_hosts(model)
    for rule in model.policy:
        rpath = ("kastro_policy", rule.index)
        for field_, names in (("from", rule.sources), ("to", rule.destinations)):
            for name in names:
                _check_host_side(model, src, (*rpath, field_), name, zone_kinds)
        for name in rule.sources:
            if name.startswith(TELEWORKER_PREFIX):
                group = name[len(TELEWORKER_PREFIX) :]
                if group not in model.teleworker_groups:
                    src.error(
                        (*rpath, "from"),
                        t("names unknown teleworker group '{name}'", name=group),
                        _known(t("teleworker groups"), model.teleworker_groups),
                    )
            elif name == INTERNET:
                src.error(
                    (*rpath, "from"),
                    t("the internet reaches the municipality's private addresses only through "
                      "a published service, on a public address"),
                    t("move the rule to kastro_published, e.g. {{website: {{host: intranet, "
                      "services: [web], ipv4: 198.51.100.3}}}} (docs/inventory.md)"),
                )  # fmt: skip
            elif not _side_ok(name, zone_kinds, zone_keys, hosts, model):
                src.error(
                    (*rpath, "from"), t("names unknown zone '{name}'", name=name),
                    _zone_fix(zone_kinds),
                )  # fmt: skip
        for name in rule.destinations:
            if name == INTERNET:
                continue
            if name.startswith(TELEWORKER_PREFIX):
                src.error(
                    (*rpath, "to"),
                    t("'{name}': teleworkers cannot be a destination", name=name),
                    t("write the rule the other way round: from the teleworker group"),
                )
            elif not _side_ok(name, zone_kinds, zone_keys, hosts, model):
                src.error(
                    (*rpath, "to"), t("names unknown zone '{name}'", name=name),
                    _zone_fix(zone_kinds),
                )  # fmt: skip
        for name in rule.services:
            if name != "any" and name not in model.services:
                src.error(
                    (*rpath, "services"),
                    t("names unknown service '{name}'", name=name),
                    _known(t("services (or 'any')"), model.services),
                )


# Zone kinds the internet must never reach directly: people's PCs, phones, cameras, OT/IoT
# devices, the guests and the management network. Published services live in servers zones.
NEVER_FROM_INTERNET = ("staff", "voip", "cctv", "iot", "guest", "management")


def risky_rule(model: Model, rule: Rule) -> list[str]:
    """What makes a policy rule dangerous enough to need `accept_risk` (empty: nothing)."""
    kind_of = {z.key: z.kind for z in model.zones} | {z.kind: z.kind for z in model.zones}
    zone_kind = {z.key: z.kind for z in model.zones}
    kind_of |= {n: zone_kind[k] for n, k in policy_hosts(model).items() if k in zone_kind}
    kinds_to = {kind_of[name] for name in rule.destinations if name in kind_of}  # zones only
    kinds_from = {kind_of[name] for name in rule.sources if name in kind_of}
    found: list[str] = []
    if "guest" in kinds_from and kinds_to:
        found.append(t("guests reach municipal networks, not only the internet"))
    return found


def _check_risk(model: Model, src: Source) -> None:
    for rule in model.policy:
        problems = risky_rule(model, rule)
        if problems and not rule.accept_risk.strip():
            src.error(
                ("kastro_policy", rule.index),
                t("is risky: {problems}", problems=Joined(problems)),
                t(
                    "narrow or remove the rule (publish services from a servers zone); if it is "
                    "really wanted, add accept_risk: 'why, who decided and until when' to it"
                ),
            )


def _zone_selector_ok(name: str, kinds: set[str], keys: set[str]) -> bool:
    return name in kinds or name in keys


def _side_ok(
    name: str, kinds: set[str], keys: set[str], hosts: dict[str, str], model: Model
) -> bool:
    """A zone, or a host or device of the model (its own problems reported on their own)."""
    if _zone_selector_ok(name, kinds, keys) or name in hosts:
        return True
    return any(h.name == name for h in model.hosts) or _device_of(model, name) != ""


def _device_of(model: Model, name: str) -> str:
    """The building of the device called ``name``, or ''."""
    return next((b.name for b in model.buildings.values() if name in b.devices), "")


def _check_host_side(
    model: Model, src: Source, path: tuple[Any, ...], name: str, kinds: set[str]
) -> None:
    """A policy side naming one host or device: it needs an address of its own, and a name
    no zone kind has."""
    host = next((h for h in model.hosts if h.name == name), None)
    building = _device_of(model, name)
    if host is None and not building:
        return
    if name in kinds:
        src.error(
            path,
            t("'{name}' is both a zone kind and a host or device: the rule is ambiguous",
              name=name),
            t("rename the host or device (e.g. {name}-1)", name=name),
        )  # fmt: skip
    elif host is not None and host.role == "gateway":
        src.error(
            path,
            t("'{name}' is a gateway, which sits in every zone of its building", name=name),
            t("name the zone instead, or open the gateway's own services with "
              "firewall_input_allow"),
        )  # fmt: skip
    elif building and not model.buildings[building].devices[name].fixed_address:
        src.error(
            path,
            t("'{name}' is a device without an address of its own in the plan", name=name),
            t("add 'fixed_address: true' to kastro_buildings.{building}.devices.{name} and "
              "give the device the address 'kastro show host {name}' prints",
              building=building, name=name),
        )  # fmt: skip


def _zone_fix(kinds: set[str]) -> str:
    listed = ", ".join(sorted(kinds)) if kinds else t("none yet")
    return t(
        "use a zone kind present in some building ({kinds}), BUILDING.ZONE, a host (or a "
        "device with fixed_address), teleworkers.GROUP or internet",
        kinds=listed,
    )


def _check_teleworkers(model: Model, src: Source) -> None:
    members = Counter(t.group for t in model.teleworkers)
    for name, group in model.teleworker_groups.items():
        if members[name] > group.capacity:
            src.error(
                ("kastro_teleworker_groups", name, "pool_size"),
                t(
                    "is {size}, which holds {capacity} people, but {members} teleworkers are in "
                    "group '{name}' (WireGuard uses the lower half of the pool, OpenVPN the "
                    "upper half)",
                    size=group.pool_size,
                    capacity=group.capacity,
                    members=members[name],
                    name=name,
                ),
                t("raise pool_size to {size}", size=_pool_for(members[name])),
            )
    ids: dict[str, int] = {}
    keys: dict[str, str] = {}
    for i, person in enumerate(model.teleworkers):
        tpath = ("kastro_teleworkers", i)
        if person.id in ids:
            src.error(
                (*tpath, "id"),
                t(
                    "'{id}' is also the id of kastro_teleworkers[{index}]",
                    id=person.id,
                    index=ids[person.id],
                ),
                t("give every teleworker a unique id; never reuse an old one"),
            )
        ids.setdefault(person.id, i)
        if person.group not in model.teleworker_groups:
            src.error(
                (*tpath, "group"),
                t("names unknown teleworker group '{name}'", name=person.group),
                _known(t("teleworker groups"), model.teleworker_groups),
            )
        if person.public_key:
            if person.public_key in keys:
                src.error(
                    (*tpath, "public_key"),
                    t("is the same key as teleworker '{id}'", id=keys[person.public_key]),
                    t("each person needs their own key pair"),
                )
            keys.setdefault(person.public_key, person.id)


def _pool_for(people: int) -> int:
    size = 8
    while size // 2 - 3 < people:
        size *= 2
    return size


def _known(what: str, names: object) -> str:
    if not names:
        return t("use one of the defined {what}: none defined", what=what)
    listed = ", ".join(sorted(names))  # type: ignore[call-overload]
    return t("use one of the defined {what}: {names}", what=what, names=listed)


def interface_problems(
    role: str, zones: set[str], links: set[str], interfaces: Any
) -> Iterator[tuple[str, str, str]]:
    """(path under kastro_interfaces, problem, fix) for one host's ``kastro_interfaces``.

    A key the roles do not know (``zone:`` for ``zones:``), a zone or link the host does not
    have, or a gateway zone without an interface would silently leave a zone without
    anti-spoofing, so every one is an error before any host changes."""
    if interfaces is None:
        return
    if not isinstance(interfaces, dict):
        yield (
            "",
            t("must be a mapping"),
            t("write zones:, links:, wan:, vpn:, management: under it"),
        )
        return
    for key in interfaces:
        if key not in INTERFACE_KEYS:
            yield (
                str(key), t("is not a known field"),
                t("use one of: {names}", names=", ".join(INTERFACE_KEYS)),
            )  # fmt: skip
    yield from _named_interfaces(interfaces, {"zones": zones, "links": links})
    if role == "gateway" and "zones" in interfaces:
        for zone in sorted(zones - set(interfaces.get("zones") or {})):
            yield (
                f"zones.{zone}",
                t("is missing: the zone would have no anti-spoofing"),
                t("add '{zone}: IFACE' under kastro_interfaces.zones", zone=zone),
            )
    for key in ("wan", "management"):
        if key in interfaces:
            yield from _iface_problem(key, interfaces[key])
    vpn = interfaces.get("vpn")
    for i, iface in enumerate([vpn] if isinstance(vpn, str) else vpn or []):
        yield from _iface_problem(f"vpn[{i}]", iface)


def _named_interfaces(
    interfaces: dict[str, Any], known: dict[str, set[str]]
) -> Iterator[tuple[str, str, str]]:
    """zones: and links: name the host's own zones and links, one interface each."""
    used: dict[str, str] = {}
    for section, names in known.items():
        entries = interfaces.get(section) or {}
        if not isinstance(entries, dict):
            yield (
                section, t("must map names to interfaces"),
                t("e.g. {section}: {{name: eth1}}", section=section),
            )  # fmt: skip
            continue
        for name, iface in entries.items():
            if name not in names:
                yield (
                    f"{section}.{name}",
                    t("this host has no zone '{name}'", name=name)
                    if section == "zones"
                    else t("this host has no link '{name}'", name=name),
                    t("use one of: {names}", names=", ".join(sorted(names)))
                    if names
                    else t("use one of: none"),
                )
            yield from _iface_problem(f"{section}.{name}", iface)
            if isinstance(iface, str) and iface in used:
                yield (
                    f"{section}.{name}",
                    t(
                        "interface '{iface}' is also given to {other}",
                        iface=iface,
                        other=used[iface],
                    ),
                    t("give each zone and link its own interface (or VLAN interface)"),
                )
            used.setdefault(str(iface), f"{section}.{name}")


def _iface_problem(path: str, iface: Any) -> Iterator[tuple[str, str, str]]:
    if not isinstance(iface, str) or not IFACE_RE.fullmatch(iface):
        yield path, t("{iface} is not an interface name", iface=repr(iface)), IFACE_FIX


def _check_backup(model: Model, src: Source) -> None:
    """kastro_backup: the server and each dataset's host are Linux hosts Kastro manages, and
    no dataset is kept on its own host, nor (unless allowed) in its own building."""
    backup = model.backup
    if backup is None:
        return
    hosts: dict[str, tuple[str, str]] = {}
    for b in model.buildings.values():
        for h in b.hosts.values():  # a name used twice is reported elsewhere: the first counts
            hosts.setdefault(h.name, (b.name, h.role))
    managed = sorted(h for h, (_, role) in hosts.items() if role in ("server", "sensor"))
    if hosts.get(backup.server, ("", ""))[1] not in ("server", "sensor"):
        src.error(
            ("kastro_backup", "server"),
            t("'{name}' is not a server or sensor of kastro_buildings", name=backup.server),
            _known(t("servers and sensors"), managed),
        )
        return
    server_building = hosts[backup.server][0]
    if backup.controller and CONTROLLER_HOST in hosts:
        src.error(
            ("kastro_backup", "controller"),
            t("a host is called '{name}', the name the controller's repository takes",
              name=CONTROLLER_HOST),
            t("rename that host"),
        )  # fmt: skip
    for name, dataset in backup.datasets.items():
        path = ("kastro_backup", "datasets", name, "host")
        if hosts.get(dataset.host, ("", ""))[1] not in ("server", "sensor"):
            src.error(
                path,
                t("'{name}' is not a server or sensor of kastro_buildings", name=dataset.host),
                _known(t("servers and sensors"), managed),
            )
        elif dataset.host == backup.server:
            src.error(
                path,
                t("'{name}' is the backup server itself: a backup kept on its own host is lost "
                  "with it", name=dataset.host),
                t("keep the repositories on another host (kastro_backup.server)"),
            )  # fmt: skip
        elif hosts[dataset.host][0] == server_building and not backup.allow_same_building:
            src.error(
                path,
                t("'{name}' is in the backup server's building ({building}): a fire or a theft "
                  "would take both", name=dataset.host, building=server_building),
                t("put kastro_backup.server in another building, or set "
                  "kastro_backup.allow_same_building: true (e.g. a lab)"),
            )  # fmt: skip


def _check_uplinks(model: Model, src: Source) -> None:
    """An uplink's ISP network is the internet's: never the municipality's own addresses."""
    if model.municipality is None:
        return
    supernets = netaddr.IPSet([*model.municipality.supernets_v4, *model.municipality.supernets_v6])
    names = Counter(up.name for up in model.municipality.uplinks)
    for i, up in enumerate(model.municipality.uplinks):
        path = ("kastro_municipality", "uplinks", i)
        if names[up.name] > 1:
            src.error((*path, "name"), t("'{name}' names two uplinks", name=up.name),
                      t("give each uplink its own name"))  # fmt: skip
        for version in (4, 6):
            net = up.network(version)
            if net is not None and supernets & netaddr.IPSet([net]):
                src.error(
                    (*path, f"ipv{version}"),
                    t("{net} overlaps the municipality's supernets", net=net),
                    t("write the address the ISP gave this uplink (its network is the "
                      "internet's, not the municipality's)"),
                )  # fmt: skip
        for j, address in enumerate(up.probe):
            if address in supernets:
                src.error((*path, "probe", j),
                          t("{address} is one of the municipality's own addresses",
                            address=address),
                          t("probe addresses beyond the ISP (e.g. its DNS servers): an uplink "
                            "is healthy while they answer through it"))  # fmt: skip
    _check_failover(model, src)


def _check_failover(model: Model, src: Source) -> None:
    """A building with two or more uplinks fails over between them: each needs a fixed
    address and ISP router (the routes), probes (a silent ISP keeps its link up), and a port
    of its own (the first rides on kastro_interfaces.wan)."""
    assert model.municipality is not None
    by_building: dict[str, list[tuple[int, Uplink]]] = {}
    for i, up in enumerate(model.municipality.uplinks):
        by_building.setdefault(up.building, []).append((i, up))
    for building, group in by_building.items():
        ports: dict[str, str] = {}
        for rank, (i, up) in enumerate(group):
            path = ("kastro_municipality", "uplinks", i)
            if rank == 0 and up.interface:
                src.error((*path, "interface"),
                          t("the first uplink of {building} rides on the gateway's "
                            "kastro_interfaces.wan", building=building),
                          t("remove interface here (set kastro_interfaces.wan in the gateway's "
                            "host_vars)"))  # fmt: skip
            if len(group) < 2:
                continue
            _check_failover_uplink(src, path, up, rank, building)
            port = up.interface or "wan"
            if port in ports:
                src.error((*path, "interface"),
                          t("uplinks '{a}' and '{b}' of {building} use the same port {port}",
                            a=ports[port], b=up.name, building=building, port=port),
                          t("give each uplink its own port"))  # fmt: skip
            ports[port] = up.name


def _check_failover_uplink(src: Source, path: Path_, up: Uplink, rank: int, building: str) -> None:
    if up.ipv4 is None or up.gateway_ipv4 is None:
        src.error(path,
                  t("{building} has two or more uplinks: '{name}' needs a fixed address and "
                    "the ISP's router to fail over (DHCP and PPPoE uplinks cannot yet)",
                    building=building, name=up.name),
                  t("write ipv4: and gateway_ipv4: as the ISP gave them"))  # fmt: skip
    if not up.probe:
        src.error(path,
                  t("{building} has two or more uplinks: '{name}' has no probe addresses",
                    building=building, name=up.name),
                  t("list two addresses beyond the ISP that answer ping, e.g. probe: "
                    "[192.0.2.53, 198.51.100.53]"))  # fmt: skip
    if rank > 0 and not up.interface:
        src.error(path,
                  t("'{name}' is a further uplink of {building} and has no port",
                    name=up.name, building=building),
                  t("name the gateway's port for it, e.g. interface: wan2"))  # fmt: skip


def uplink_of(model: Model, address: netaddr.IPAddress) -> Uplink | None:
    """The uplink whose ISP network holds a public address, or None."""
    uplinks = model.municipality.uplinks if model.municipality else ()
    return next(
        (up for up in uplinks if (net := up.network(address.version)) and address in net), None
    )


def _check_published(model: Model, src: Source) -> None:
    """kastro_published: a host with a planned address, known port services, public addresses
    on an uplink's network, no port published twice, sensitive zones only with accept_risk."""
    hosts = policy_hosts(model)
    seen: dict[tuple[str, str, int], str] = {}
    for name, entry in model.published.items():
        path = ("kastro_published", name)
        zone = hosts.get(entry.host)
        if zone is None:
            src.error((*path, "host"),
                      t("'{name}' is not a server, sensor or device with an address in a zone",
                        name=entry.host),
                      _known(t("hosts and devices with fixed_address"), hosts))  # fmt: skip
        _check_published_services(model, src, path, entry, seen)
        _check_public_addresses(model, src, path, entry)
        _check_published_sources(model, src, path, entry)
        kind = next((z.kind for z in model.zones if z.key == zone), "")
        if kind in NEVER_FROM_INTERNET and not entry.accept_risk.strip():
            src.error(
                path,
                t("is risky: the internet reaches a {kind} zone, which it never should",
                  kind=kind),
                t("publish services from a servers zone; if it is really wanted, add "
                  "accept_risk: 'why, who decided and until when' to it"),
            )  # fmt: skip


def _check_published_services(
    model: Model,
    src: Source,
    path: tuple[Any, ...],
    entry: Published,
    seen: dict[tuple[str, str, int], str],
) -> None:
    for service in entry.services:
        found = model.services.get(service)
        if found is None:
            src.error((*path, "services"), t("names unknown service '{name}'", name=service),
                      _known(t("services"), model.services))  # fmt: skip
            continue
        if not any(p.protocol in ("tcp", "udp") for p in found.ports):
            src.error((*path, "services"),
                      t("'{name}' has no TCP or UDP port to publish", name=service),
                      t("publish services with tcp/ or udp/ ports (the gateway answers "
                        "ping itself)"))  # fmt: skip
        for port in found.ports:
            for address in (entry.ipv4, entry.ipv6):
                if address is None or port.protocol == "icmp":
                    continue
                for number in (port.first, port.last):
                    key = (str(address), port.protocol, number)
                    other = seen.setdefault(key, entry.name)
                    if other != entry.name:
                        src.error((*path, "services"),
                                  t("{address} {port} is published twice (also by '{other}')",
                                    address=address, port=port, other=other),
                                  t("publish it once, or give one of them another public "
                                    "address"))  # fmt: skip
                        break


def _check_public_addresses(
    model: Model, src: Source, path: tuple[Any, ...], entry: Published
) -> None:
    for version, address in ((4, entry.ipv4), (6, entry.ipv6)):
        if address is None:
            continue
        up = uplink_of(model, address)
        if up is None:
            networks = [
                str(n)
                for u in (model.municipality.uplinks if model.municipality else ())
                if (n := u.network(version))
            ]
            src.error(
                (*path, f"ipv{version}"),
                t("{address} is on no uplink's network", address=address),
                t("use an address of {networks}", networks=", ".join(networks))
                if networks
                else t("give the uplink its address first, e.g. kastro_municipality.uplinks[0]"
                       ".ipv{version}: {example}", version=version,
                       example="198.51.100.2/29" if version == 4 else "2001:db8:100::2/64"),
            )  # fmt: skip
        elif up.building in model.buildings and model.gateway(up.building) is None:
            src.error(
                (*path, f"ipv{version}"),
                t("uplink '{name}' is in building {building}, which has no gateway to forward "
                  "it", name=up.name, building=up.building),
                t("add a host with role: gateway to kastro_buildings.{building}",
                  building=up.building),
            )  # fmt: skip
    if entry.ipv6_own:
        v6 = model.municipality.supernets_v6 if model.municipality else ()
        if not v6 or all(net in ULA for net in v6):
            src.error(
                (*path, "ipv6"),
                t("'own' needs global IPv6 addresses, but the municipality's are unique-local "
                  "(fc00::/7) or none"),
                t("give a public IPv6 address of an uplink's network instead"),
            )  # fmt: skip


ULA = netaddr.IPNetwork("fc00::/7")


def _check_published_sources(
    model: Model, src: Source, path: tuple[Any, ...], entry: Published
) -> None:
    own = netaddr.IPSet(
        [*model.municipality.supernets_v4, *model.municipality.supernets_v6]
        if model.municipality
        else []
    )
    for i, net in enumerate(entry.sources):
        if own & netaddr.IPSet([net]):
            src.error(
                (*path, "from", i),
                t("{net} is inside the municipality's own addresses", net=net),
                t("list internet addresses (inside users reach the host by the policy, on its "
                  "own address)"),
            )  # fmt: skip


def internet_hub(model: Model, link: Link) -> str:
    """The end of an internet link that the other reaches: the first whose building has an
    uplink with a fixed public IPv4 address ('' when neither has one)."""
    uplinks = model.municipality.uplinks if model.municipality else ()
    fixed = {up.building for up in uplinks if up.ipv4 is not None}
    return next((end for end in link.ends if end in fixed), "")


def _check_internet_links(model: Model, src: Source) -> None:
    """A link over the internet needs a hub with a fixed public address and a branch with an
    uplink of its own (any address: behind NAT works), both with a gateway, and no more
    capacity than the slower uplink."""
    uplinks = model.municipality.uplinks if model.municipality else ()
    for link in model.links.values():
        if link.medium != INTERNET_MEDIUM or not set(link.ends) <= set(model.buildings):
            continue
        path = ("kastro_links", link.name)
        hub = internet_hub(model, link)
        if not hub:
            src.error(
                (*path, "ends"),
                t("neither {first} nor {second} has an uplink with a fixed public address for "
                  "the other to reach", first=link.ends[0], second=link.ends[1]),
                t("give the hub's uplink its address, e.g. kastro_municipality.uplinks[0].ipv4: "
                  "198.51.100.2/29"),
            )  # fmt: skip
            continue
        for end in link.ends:
            speeds = [up.capacity_mbps for up in uplinks if up.building == end]
            if not speeds:
                src.error(
                    (*path, "ends"),
                    t("{building} has no uplink to reach the internet over", building=end),
                    t("add its connection, e.g. kastro_municipality.uplinks: [{{name: "
                      "{building}-4g, building: {building}, capacity_mbps: 20}}]",
                      building=end),
                )  # fmt: skip
            elif link.capacity_mbps > max(speeds):
                src.error(
                    (*path, "capacity_mbps"),
                    t("is {capacity}, more than {building}'s uplink carries ({speed})",
                      capacity=link.capacity_mbps, building=end, speed=max(speeds)),
                    t("give the tunnel at most the slower uplink's speed, so QoS shapes "
                      "before the ISP drops"),
                )  # fmt: skip
