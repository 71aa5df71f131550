"""Turn the plan's links into one gateway's link configuration.

The links role renders this for each gateway; the host helper (kastro-links) applies it. Every
address, port and rate here follows from the plan and the inventory, never from a counter that
depends on how many other links exist: adding a link changes the two gateways at its ends and
nothing else (tests/unit/test_links_config.py checks that for every gateway).

How an encrypted link is built:
- The physical link (the "underlay": radio bridge, leased line) only carries WireGuard. It is
  addressed with IPv4 link-local addresses (RFC 3927) derived from the link's planned /31, so
  nothing is allocated twice and nothing is typed by hand.
- The WireGuard tunnel carries the planned /31 and is what OSPF, QoS and the firewall see.
- Its UDP port is derived from the planned /31 too, so it is unique on every gateway.
A plain link (fibre the municipality owns) carries the planned /31 directly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import netaddr

from kastro.inventory.model import INTERNET_MEDIUM, interface_label, parse_port
from kastro.nft import nft_set

# WireGuard's ports for links: 51821 + a number taken from the link's /31, inside one block.
WIREGUARD_PORT_BASE = 51821
WIREGUARD_PORT_SPAN = 8192
# Linux interface names are at most 15 characters.
IFNAME_MAX = 15

DSCP = {
    "cs0": 0,
    "cs1": 8,
    "af11": 10,
    "af12": 12,
    "af13": 14,
    "cs2": 16,
    "af21": 18,
    "af22": 20,
    "af23": 22,
    "cs3": 24,
    "af31": 26,
    "af32": 28,
    "af33": 30,
    "cs4": 32,
    "af41": 34,
    "af42": 36,
    "af43": 38,
    "cs5": 40,
    "va": 44,
    "ef": 46,
    "cs6": 48,
    "cs7": 56,
}


class LinksConfigError(ValueError):
    """The inventory or the role variables cannot be turned into links; says what to fix."""


@dataclass(frozen=True)
class QosClass:
    name: str
    share: int  # percent of the shaped rate it is guaranteed
    priority: int  # 0 is served first
    dscp: tuple[str, ...]
    strict: bool  # may not borrow beyond its share (VoIP: strict priority, but bounded)
    limit: int  # packets queued before dropping


SAFE_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def tunnel_interface(peer_building: str, parallel: bool = False) -> str:
    """wl-<peer>: readable, unique per gateway; wp-<link> for a link beside another one
    between the same two buildings (peer_building is then the link's name)."""
    prefix = "wp-" if parallel else "wl-"
    name = f"{prefix}{peer_building}"
    if len(name) <= IFNAME_MAX:
        return name
    digest = hashlib.sha256(peer_building.encode()).hexdigest()[:4]
    return f"{prefix}{peer_building[: IFNAME_MAX - 8]}-{digest}"


def underlay_addresses(link_v4: str) -> tuple[str, str]:
    """169.254.x.y/31 for both ends, from the low 16 bits of the planned /31."""
    net = netaddr.IPNetwork(link_v4)
    low = int(net.network) & 0xFFFE
    first = netaddr.IPAddress(int(netaddr.IPAddress("169.254.0.0")) + low)
    return f"{first}/31", f"{first + 1}/31"


def tunnel_link_local(end_v4: str) -> str:
    """fe80::a3c:ff1/64 for the end 10.60.15.241: unique per end, readable back to the plan."""
    value = int(netaddr.IPNetwork(end_v4).ip)
    return f"fe80::{value >> 16:x}:{value & 0xFFFF:x}/64"


def wireguard_port(link_v4: str) -> int:
    return WIREGUARD_PORT_BASE + (int(netaddr.IPNetwork(link_v4).network) >> 1) % (
        WIREGUARD_PORT_SPAN
    )


def parse_classes(raw: Sequence[Mapping[str, Any]]) -> list[QosClass]:
    classes: list[QosClass] = []
    for i, item in enumerate(raw):
        where = f"links_qos_classes[{i}]"
        name = str(item.get("name") or "")
        if not (name.isascii() and name.isidentifier()):
            raise LinksConfigError(f"{where}.name: give each class a short name such as voip")
        try:
            share = int(item.get("share", 0))
            priority = int(item.get("priority", 3))
        except (TypeError, ValueError) as exc:
            raise LinksConfigError(f"{where}: share and priority must be numbers") from exc
        if not 1 <= share <= 100:
            raise LinksConfigError(f"{where}.share: {share} is not a percentage 1..100")
        if not 0 <= priority <= 7:
            raise LinksConfigError(f"{where}.priority: {priority} is not 0..7 (0 first)")
        dscp = tuple(str(d).lower() for d in item.get("dscp") or ())
        for d in dscp:
            if d not in DSCP:
                raise LinksConfigError(
                    f"{where}.dscp: '{d}' is not a DSCP name; use one of {', '.join(DSCP)}"
                )
        limit = int(item.get("limit", 200))
        classes.append(QosClass(name, share, priority, dscp, bool(item.get("strict")), limit))
    if not classes:
        raise LinksConfigError("links_qos_classes: give at least one class (the default)")
    total = sum(c.share for c in classes)
    if total > 100:
        raise LinksConfigError(
            f"links_qos_classes: the shares add up to {total} %; make them add up to 100 at most"
        )
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise LinksConfigError("links_qos_classes: two classes have the same name")
    if "default" not in names:
        raise LinksConfigError(
            "links_qos_classes: name one class 'default' (unmarked traffic goes there)"
        )
    return classes


def qos_plan(rate_kbit: int, classes: Sequence[QosClass]) -> list[dict[str, Any]]:
    """HTB classes 1:10, 1:20, ... in the order given; what the helper hands to tc."""
    out = []
    for i, cls in enumerate(classes):
        rate = max(8, rate_kbit * cls.share // 100)
        out.append(
            {
                "name": cls.name,
                "classid": f"1:{10 * (i + 1)}",
                "rate_kbit": rate,
                "ceil_kbit": rate if cls.strict else rate_kbit,
                "priority": cls.priority,
                "dscp": [DSCP[d] for d in cls.dscp],
                "limit": cls.limit,
            }
        )
    return out


def _prefixlen(net: str) -> str:
    return net.split("/")[1]


def gateway_config(
    host: str, variables: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything kastro-links and frr.conf need on one gateway (no secrets)."""
    plan = variables.get("kastro_plan") or {}
    interfaces = variables.get("kastro_interfaces") or {}
    me = (plan.get("hosts") or {}).get(host)
    if not me or me.get("role") != "gateway":
        raise LinksConfigError(
            f"{host} is not a gateway in kastro_plan.hosts; the links role runs on gateways only"
        )
    router_id = (plan.get("router_ids") or {}).get(host)
    if not router_id:
        raise LinksConfigError(
            f"kastro_plan.router_ids.{host} is missing: run 'kastro apply -i INVENTORY' again"
        )
    addresses: list[dict[str, str]] = [
        {"interface": "lo", "address": f"{router_id['ipv4']}/32"},
    ]
    if router_id.get("ipv6"):
        addresses.append({"interface": "lo", "address": f"{router_id['ipv6']}/128"})
    zones = _zones(plan, me, interfaces.get("zones") or {}, addresses)
    # The uplinks' addresses are the uplinks role's (kastro-uplinks): one owner per address.
    links = _links(host, plan, me, variables, settings, addresses)
    return {
        "host": host,
        "building": str(me["building"]),
        "ports": _ports(variables.get("kastro_netdevs")),
        "router_id": router_id["ipv4"],
        "ospf6": bool(settings.get("ospf6")),
        "addresses": addresses,
        "zones": zones,
        "links": links,
        "qos_ruleset": qos_ruleset(variables, zones, links, settings),
    }


def _ports(ports: Any) -> dict[str, list[dict[str, Any]]]:
    """The bonds and VLANs kastro-links creates and the names the .link files give
    (kastro_netdevs, derived from kastro_ports; none where the inventory names the interfaces
    itself)."""
    ports = ports if isinstance(ports, Mapping) else {}
    return {key: list(ports.get(key) or []) for key in ("names", "bonds", "vlans")}


def port_link_files(config: Mapping[str, Any]) -> list[dict[str, str]]:
    """One systemd .link file per port with a MAC: udev gives the port its model name at boot,
    whichever slot or driver order the kernel found it in."""
    files = []
    for port in config["ports"]["names"]:
        content = (
            "# Kastro (kastro_ports): the port with this MAC address is called "
            f"{port['name']}.\n[Match]\nPermanentMACAddress={port['mac']}\n\n"
            f"[Link]\nName={port['name']}\n"
        )
        files.append(
            {"dest": f"/etc/systemd/network/10-kastro-{port['name']}.link", "mode": "0644",
             "content": content}
        )  # fmt: skip
    return files


def _zones(
    plan: Mapping[str, Any],
    me: Mapping[str, Any],
    zone_ifaces: Mapping[str, str],
    addresses: list[dict[str, str]],
) -> list[dict[str, str]]:
    """The gateway's zones (name, kind, interface); their addresses go into `addresses`."""
    building = str(me["building"])
    zones = []
    for zone_name, iface in sorted(zone_ifaces.items()):
        zone = (plan.get("zones") or {}).get(f"{building}.{zone_name}")
        mine = (me.get("interfaces") or {}).get(zone_name)
        if zone is None or mine is None:
            raise LinksConfigError(
                f"kastro_interfaces.zones.{zone_name}: building '{building}' has no zone "
                f"'{zone_name}' in the plan; use a zone name from kastro_buildings.{building}.zones"
            )
        zones.append({"name": zone_name, "kind": zone["kind"], "interface": iface})
        addresses.append(
            {"interface": iface, "address": f"{mine['ipv4']}/{_prefixlen(zone['ipv4'])}"}
        )
        if mine.get("ipv6") and zone.get("ipv6"):
            addresses.append(
                {"interface": iface, "address": f"{mine['ipv6']}/{_prefixlen(zone['ipv6'])}"}
            )
    return zones


def _hub_addresses(variables: Mapping[str, Any]) -> dict[str, str]:
    """Each building's fixed public IPv4 address (its first uplink with one): where the
    branches' internet links reach it."""
    out: dict[str, str] = {}
    for up in (variables.get("kastro_municipality") or {}).get("uplinks") or ():
        if up.get("ipv4"):
            out.setdefault(str(up["building"]), str(netaddr.IPNetwork(str(up["ipv4"])).ip))
    return out


def _ends(
    host: str, plan: Mapping[str, Any], me: Mapping[str, Any], variables: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The gateway's end of each of its links, unshaped, each with its `_addresses`. A link
    over the internet rides on the uplink (kastro_interfaces.wan)."""
    interfaces = variables.get("kastro_interfaces") or {}
    link_ifaces = dict(interfaces.get("links") or {})
    building = str(me["building"])
    hubs = _hub_addresses(variables)
    ends = []
    ports_seen: dict[int, str] = {}
    for name, link in sorted((plan.get("links") or {}).items()):
        if building not in link["ends"]:
            continue
        peer = next(b for b in link["ends"] if b != building)
        if link.get("medium") == INTERNET_MEDIUM:
            if not interfaces.get("wan"):
                raise LinksConfigError(
                    f"kastro_interfaces.wan: {host} has no uplink interface for link '{name}' "
                    f"over the internet (to {peer}); set kastro_interfaces.wan in its host_vars"
                )
            link_ifaces[name] = str(interfaces["wan"])
        if name not in link_ifaces:
            raise LinksConfigError(
                f"kastro_interfaces.links.{name}: {host} has no interface for link '{name}' "
                f"(to {peer}); set kastro_interfaces.links.{name} to the interface name in "
                "this host's host_vars"
            )
        label = interface_label(
            {n: (other.get("ends") or {}).keys() for n, other in plan["links"].items()},
            name,
            building,
        )
        entry = _link_end(name, link, building, peer, str(link_ifaces[name]), label)
        if link.get("medium") == INTERNET_MEDIUM:
            _over_internet(entry, link, building, hubs)
        if link["encrypted"]:
            port = entry["wireguard"]["port"]
            if port in ports_seen:
                raise LinksConfigError(
                    f"kastro_plan.links.{name}: its WireGuard port {port} is already used by "
                    f"link '{ports_seen[port]}' on {host}; renumber one of them "
                    f"('kastro apply -i INVENTORY --renumber kastro_plan.links.{name}')"
                )
            ports_seen[port] = name
        ends.append(entry)
    return ends


def link_ends(host: str, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A gateway's link ends (name, interface, underlay, encryption, WireGuard port), without
    addresses or QoS: what the firewall must know of the links. [] when it has none."""
    plan = variables.get("kastro_plan") or {}
    me = (plan.get("hosts") or {}).get(host) or {}
    ends = _ends(host, plan, me, variables) if me.get("building") else []
    for entry in ends:
        entry.pop("_addresses")
    return ends


def _links(
    host: str,
    plan: Mapping[str, Any],
    me: Mapping[str, Any],
    variables: Mapping[str, Any],
    settings: Mapping[str, Any],
    addresses: list[dict[str, str]],
) -> list[dict[str, Any]]:
    """The gateway's end of each of its links, shaped; their addresses go into `addresses`."""
    classes = parse_classes(settings.get("qos_classes") or ())
    links = []
    for entry in _ends(host, plan, me, variables):
        addresses += entry.pop("_addresses")
        _shape(entry, plan["links"][entry["name"]], settings, classes)
        links.append(entry)
    return links


def _link_end(
    name: str,
    link: Mapping[str, Any],
    building: str,
    peer: str,
    underlay: str,
    label: tuple[bool, str],
) -> dict[str, Any]:
    """One end of a link: peer, addresses, the WireGuard tunnel of an encrypted link."""
    ends = link["ends"]
    entry: dict[str, Any] = {
        "name": name,
        "peer_building": peer,
        "peer_gateway": ends[peer]["gateway"],
        "encrypted": bool(link["encrypted"]),
        "underlay": underlay,
        "ipv4": f"{ends[building]['ipv4']}/31",
        "peer_ipv4": ends[peer]["ipv4"],
        "cost": int(link["cost"]),
        "capacity_mbps": int(link["capacity_mbps"]),
        "mtu": int(link["mtu"]),
    }
    addresses: list[dict[str, str]] = []
    if link["encrypted"]:
        index = list(ends).index(building)
        port = wireguard_port(link["ipv4"])
        pair = underlay_addresses(link["ipv4"])
        entry["interface"] = tunnel_interface(label[1], parallel=label[0])
        entry["routed_mtu"] = int(link["inner_mtu"])
        entry["wireguard"] = {
            "port": port,
            "address": pair[index],
            "peer_endpoint": f"{pair[1 - index].split('/')[0]}:{port}",
        }
        addresses.append({"interface": underlay, "address": pair[index]})
    else:
        entry["interface"] = underlay
        entry["routed_mtu"] = int(link["mtu"])
    addresses.append({"interface": entry["interface"], "address": entry["ipv4"]})
    if ends[building].get("ipv6") and ends[peer].get("ipv6"):
        entry["ipv6"] = f"{ends[building]['ipv6']}/127"
        entry["peer_ipv6"] = ends[peer]["ipv6"]
        addresses.append({"interface": entry["interface"], "address": entry["ipv6"]})
        if link["encrypted"]:
            # OSPFv3 talks link-local; a kernel WireGuard interface has none of its own
            # (wireguard-go's tun device gets a random one), so give it a stable one.
            addresses.append(
                {"interface": entry["interface"], "address": tunnel_link_local(entry["ipv4"])}
            )
    entry["_addresses"] = addresses
    return entry


def _over_internet(
    entry: dict[str, Any], link: Mapping[str, Any], building: str, hubs: Mapping[str, str]
) -> None:
    """A link over the internet: no underlay addresses of its own (the uplink has its own);
    the branch sends to the hub's public address and keeps its NAT mapping open, the hub
    answers wherever the branch's packets come from (it never needs the branch's address)."""
    hub = str(link.get("hub") or "")
    wireguard = entry["wireguard"]
    wireguard.pop("address")
    entry["_addresses"] = [a for a in entry["_addresses"] if a["interface"] != entry["underlay"]]
    entry["internet"] = True
    if building == hub:
        wireguard.pop("peer_endpoint")
        wireguard["keepalive"] = 0
    else:
        if hub not in hubs:
            raise LinksConfigError(
                f"kastro_links.{entry['name']}: the hub {hub or '(none)'} has no uplink with a "
                "fixed public ipv4 in kastro_municipality.uplinks; run 'kastro validate'"
            )
        wireguard["peer_endpoint"] = f"{hubs[hub]}:{wireguard['port']}"
        wireguard["keepalive"] = 25


def _shape(
    entry: dict[str, Any],
    link: Mapping[str, Any],
    settings: Mapping[str, Any],
    classes: Sequence[QosClass],
) -> None:
    """Shape a little under the medium's rate, so the queue builds here (where the classes
    are) and not in the radio or the provider's box. Tunnels lose their overhead too."""
    rate = int(link["capacity_mbps"]) * 1000 * int(settings.get("shape_percent", 95)) // 100
    if link["encrypted"]:
        rate = rate * int(link["inner_mtu"]) // int(link["mtu"])
    entry["shaped_rate_kbit"] = rate
    entry["qos"] = qos_plan(rate, classes) if settings.get("qos_enabled", True) else []


def qos_ruleset(
    variables: Mapping[str, Any],
    zones: Sequence[Mapping[str, Any]],
    links: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> str:
    """nftables table that gives forwarded packets their DSCP at the edge of the network.

    Packets that arrive over a link were marked by the gateway they entered at and keep their
    mark. Everything else (zones, the internet, teleworkers) is re-marked: a PC cannot put its
    downloads in the VoIP class by marking them itself. Later rules win over earlier ones.
    """
    plan = variables.get("kastro_plan") or {}
    link_ifaces = sorted(
        {f'"{i}"' for link in links for i in (link["interface"], link["underlay"])}
    )
    rules: list[str] = []
    if link_ifaces:
        rules.append(f"iifname {nft_set(link_ifaces)} return")
    rules += ["ip dscp set cs0", "ip6 dscp set cs0"]
    services = variables.get("kastro_services") or {}
    for i, item in enumerate(settings.get("qos_marking") or ()):
        marking = _Marking.parse(i, item, services)
        if marking.kind:
            rules += _zone_kind_marks(marking, plan, zones)
        else:
            rules += _port_marks(marking)
    rules += _untrusted_zones_best_effort(plan, zones, settings)
    body = "\n".join(f"    {r}" for r in rules)
    return (
        "table inet kastro_qos\n"
        "delete table inet kastro_qos\n"
        "table inet kastro_qos {\n"
        "  chain classify {\n"
        "    type filter hook forward priority mangle; policy accept;\n"
        f"{body}\n"
        "  }\n"
        "}\n"
    )


@dataclass(frozen=True)
class _Marking:
    """One links_qos_marking entry, checked: by zone kind, or by TCP/UDP port spans."""

    where: str
    dscp: str
    kind: str
    spans: dict[str, list[str]]  # protocol -> port spans
    comment: str

    @classmethod
    def parse(cls, i: int, item: Mapping[str, Any], services: Mapping[str, Any]) -> _Marking:
        where = f"links_qos_marking[{i}]"
        dscp = str(item.get("dscp") or "").lower()
        if dscp not in DSCP:
            raise LinksConfigError(
                f"{where}.dscp: '{dscp}' is not a DSCP name; use ef, af41, cs1, ..."
            )
        kind = str(item.get("zone_kind") or "")
        ports = list(item.get("ports") or ()) + _service_ports(where, item, services)
        if bool(kind) == bool(ports):
            raise LinksConfigError(
                f"{where}: give either zone_kind, or ports / services with TCP or UDP ports"
            )
        label = str(item.get("name") or f"marking{i}")
        if not SAFE_LABEL.fullmatch(label):
            raise LinksConfigError(
                f"{where}.name: '{label}' may hold only letters, digits, '_', '.' and '-' "
                "(at most 32)"
            )
        return cls(where, dscp, kind, _spans(where, ports), f'comment "{label}"')


def _service_ports(where: str, item: Mapping[str, Any], services: Mapping[str, Any]) -> list[str]:
    ports: list[str] = []
    for service in item.get("services") or ():
        if service not in services:
            raise LinksConfigError(
                f"{where}.services: '{service}' is not in kastro_services; "
                f"use one of {', '.join(sorted(services))}"
            )
        ports += [p for p in services[service].get("ports") or () if p != "icmp"]
    return ports


def _spans(where: str, ports: list[str]) -> dict[str, list[str]]:
    by_proto: dict[str, list[str]] = {}
    for text in ports:
        port, problem = parse_port(text)
        if port is None or port.protocol == "icmp":
            raise LinksConfigError(
                f"{where}.ports: {problem or 'icmp has no port'}; write tcp/PORT or udp/FIRST-LAST"
            )
        by_proto.setdefault(port.protocol, []).append(port.span)
    return by_proto


def _zone_kind_marks(
    marking: _Marking, plan: Mapping[str, Any], zones: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Traffic from this gateway's zones of the kind, and to every zone of the kind."""
    planned = [z for z in (plan.get("zones") or {}).values() if z.get("kind") == marking.kind]
    local = sorted(f'"{z["interface"]}"' for z in zones if z["kind"] == marking.kind)
    nets = {
        "ip": sorted(z["ipv4"] for z in planned),
        "ip6": sorted(z["ipv6"] for z in planned if z.get("ipv6")),
    }
    rules: list[str] = []
    for family in ("ip", "ip6"):
        mark = f"{family} dscp set {marking.dscp} {marking.comment}"
        if local:
            rules.append(f"iifname {nft_set(local)} {mark}")
        if nets[family]:
            rules.append(f"{family} daddr {nft_set(nets[family])} {mark}")
    return rules


def _port_marks(marking: _Marking) -> list[str]:
    """Requests to the ports and their answers from them, in both families."""
    return [
        f"meta l4proto {proto} th {direction} {nft_set(spans)} "
        f"{family} dscp set {marking.dscp} {marking.comment}"
        for proto, spans in sorted(marking.spans.items())
        for direction in ("dport", "sport")
        for family in ("ip", "ip6")
    ]


def _untrusted_zones_best_effort(
    plan: Mapping[str, Any], zones: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]
) -> list[str]:
    """Last rules (they win): traffic from or to guest-like zones is cs0 whatever its ports,
    so a guest cannot fill the VoIP class by sending from or to port 5060."""
    kinds = set(settings.get("qos_untrusted_zone_kinds", ("guest",)) or ())
    planned = [z for z in (plan.get("zones") or {}).values() if z.get("kind") in kinds]
    rules: list[str] = []
    local = sorted(f'"{z["interface"]}"' for z in zones if z["kind"] in kinds)
    comment = 'comment "untrusted zones: best effort"'
    for family, key in (("ip", "ipv4"), ("ip6", "ipv6")):
        if local:
            rules.append(f"iifname {nft_set(local)} {family} dscp set cs0 {comment}")
        nets = sorted(str(z[key]) for z in planned if z.get(key))
        if nets:
            rules.append(f"{family} saddr {nft_set(nets)} {family} dscp set cs0 {comment}")
            rules.append(f"{family} daddr {nft_set(nets)} {family} dscp set cs0 {comment}")
    return rules
