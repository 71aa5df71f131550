"""What the lab builds for an inventory: hosts, networks, and which interface joins which.

Pure data, derived from the validated model alone, so it can be tested without podman and
so `up` and `down` always agree on what belongs to the lab.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kastro.inventory.model import INTERNET_MEDIUM, Model, Uplink, interface_label

IFNAMSIZ = 15  # Linux interface names hold at most 15 characters
MANAGEMENT_IFACE = "eth0"  # podman's interface on the management network
WAN_IFACE = "wan"
# Hosts on the internet side of the lab that the inventory does not describe.
OUTSIDE_HOSTS = ("home", "attacker")
OUTSIDE_GROUP = "lab_outside"
# The ISP's carrier-grade NAT in front of the buildings whose uplinks have no fixed address
# (4G, ADSL): their gateways sit on a network of their own behind it, as village offices do.
ISP_NAT = "isp-nat"
# A building with two or more uplinks fails over between them: the lab gives each such uplink
# an ISP router (at the uplink's gateway_ipv4, its port `bb` on the backbone) and puts INTERNET_HOST
# behind them on the backbone (198.18.0.0/24), what the probes ping and the failover test reaches.
ISP_ROUTER_PREFIX = "isp-"
BACKBONE_IFACE = "bb"
INTERNET_HOST = "inet"


@dataclass(frozen=True)
class Attachment:
    host: str
    iface: str


@dataclass(frozen=True)
class Network:
    """One L2 segment: a building zone, an inter-building link, or the internet side."""

    name: str  # zone:cityhall.staff, link:cityhall-kep, internet
    kind: str  # zone, link, internet
    members: tuple[Attachment, ...]


@dataclass(frozen=True)
class LabHostSpec:
    name: str
    role: str  # gateway, server, sensor, endpoint, home, attacker
    building: str | None
    forwarding: bool


@dataclass
class Topology:
    hosts: dict[str, LabHostSpec] = field(default_factory=dict)
    networks: list[Network] = field(default_factory=list)

    def interfaces(self, host: str) -> dict[str, str]:
        """network name -> interface name on that host."""
        return {n.name: a.iface for n in self.networks for a in n.members if a.host == host}

    def interface_vars(self, host: str) -> dict[str, object]:
        """The ``kastro_interfaces`` variable roles read to find a host's interfaces."""
        out: dict[str, object] = {"management": MANAGEMENT_IFACE}
        zones: dict[str, str] = {}
        links: dict[str, str] = {}
        for network, iface in sorted(self.interfaces(host).items()):
            kind, _, rest = network.partition(":")
            if kind == "zone":
                zones[rest.split(".", 1)[1]] = iface
            elif kind == "link":
                links[rest] = iface
            elif kind in ("internet", "isp"):
                out["wan"] = iface  # a further uplink's port is named by the model
        if zones:
            out["zones"] = zones
        if links:
            out["links"] = links
        return out


def iface_name(prefix: str, name: str) -> str:
    """A Linux interface name for prefix+name, shortened with a hash when too long."""
    full = f"{prefix}{name}"
    if len(full) <= IFNAMSIZ:
        return full
    digest = hashlib.sha1(name.encode()).hexdigest()[:4]  # noqa: S324 (a name, not security)
    return f"{full[: IFNAMSIZ - 5]}-{digest}"


def _link_networks(model: Model) -> list[Network]:
    """One cable per link between the two gateways; a second link between the same two
    buildings gets interfaces named after itself (interface_label)."""
    pairs = {link.name: link.ends for link in model.links.values()}
    networks = []
    for link in sorted(model.links.values(), key=lambda link: link.name):
        if link.medium == INTERNET_MEDIUM:
            continue  # no cable: the tunnel rides on both ends' uplinks
        members = []
        for here in link.ends:
            gateway = model.gateway(here)
            parallel, label = interface_label(pairs, link.name, here)
            if gateway:
                members.append(
                    Attachment(gateway.name, iface_name("lp-" if parallel else "l-", label))
                )
        networks.append(Network(f"link:{link.name}", "link", tuple(members)))
    return networks


def build_topology(model: Model) -> Topology:
    topo = Topology()
    for host in sorted(model.hosts, key=lambda h: h.name):
        topo.hosts[host.name] = LabHostSpec(
            host.name, host.role, host.building, forwarding=host.role == "gateway"
        )
    for name in OUTSIDE_HOSTS:
        topo.hosts[name] = LabHostSpec(name, name, None, forwarding=False)

    for building in sorted(model.buildings.values(), key=lambda b: b.name):
        gateway = model.gateway(building.name)
        for zone in sorted(building.zones.values(), key=lambda z: z.name):
            iface = iface_name("z-", zone.name)
            members = [Attachment(gateway.name, iface)] if gateway else []
            members += [
                Attachment(h.name, iface)
                for h in sorted(building.hosts.values(), key=lambda h: h.name)
                if h.zone == zone.name
            ]
            topo.networks.append(Network(f"zone:{zone.key}", "zone", tuple(members)))

    topo.networks += _link_networks(model)
    _internet_networks(model, topo)
    return topo


def _internet_networks(model: Model, topo: Topology) -> None:
    """The internet segment: the gateways of buildings with a fixed uplink address and the
    outside hosts; behind the ISP's NAT, one network per building whose uplinks have none."""
    uplinks = model.municipality.uplinks if model.municipality else ()
    uplinked = sorted({u.building for u in uplinks})
    fixed = {u.building for u in uplinks if u.ipv4 is not None}
    internet = []
    behind_nat = []
    for building_name in uplinked or [b.name for b in model.buildings.values() if b.city_hall]:
        gateway = model.gateway(building_name)
        if gateway is None:
            continue
        if fixed and building_name not in fixed:
            behind_nat.append((building_name, gateway.name))
        else:
            internet.append(Attachment(gateway.name, WAN_IFACE))
    internet += [Attachment(name, WAN_IFACE) for name in OUTSIDE_HOSTS]
    if behind_nat:
        topo.hosts[ISP_NAT] = LabHostSpec(ISP_NAT, ISP_NAT, None, forwarding=True)
        internet.append(Attachment(ISP_NAT, WAN_IFACE))
    internet += _isp_routers(model, topo)
    topo.networks.append(Network("internet", "internet", tuple(internet)))
    for building_name, gateway_name in behind_nat:
        topo.networks.append(
            Network(
                f"isp:{building_name}",
                "isp",
                (Attachment(gateway_name, WAN_IFACE),
                 Attachment(ISP_NAT, iface_name("c-", building_name))),
            )
        )  # fmt: skip


def failover_uplinks(model: Model) -> list[tuple[int, Uplink]]:
    """(rank in its building, uplink) of every uplink of a building with two or more."""
    uplinks = model.municipality.uplinks if model.municipality else ()
    out = []
    for building in sorted({u.building for u in uplinks}):
        mine = [u for u in uplinks if u.building == building]
        if len(mine) > 1:
            out += list(enumerate(mine))
    return out


def isp_router(uplink: Uplink) -> str:
    return f"{ISP_ROUTER_PREFIX}{uplink.name}"


def _isp_routers(model: Model, topo: Topology) -> list[Attachment]:
    """The ISP routers of the uplinks that fail over, and the backbone behind them. The first
    uplink's router joins the internet segment (returned); a further uplink gets a segment of
    its own with the gateway's port for it."""
    on_internet: list[Attachment] = []
    backbone: list[Attachment] = []
    for rank, up in failover_uplinks(model):
        router = isp_router(up)
        topo.hosts[router] = LabHostSpec(router, "isp", None, forwarding=True)
        backbone.append(Attachment(router, BACKBONE_IFACE))
        gateway = model.gateway(up.building)
        if rank == 0:
            on_internet.append(Attachment(router, WAN_IFACE))
        elif gateway is not None:
            topo.networks.append(
                Network(f"uplink:{up.name}", "uplink",
                        (Attachment(gateway.name, up.interface), Attachment(router, WAN_IFACE)))
            )  # fmt: skip
    if backbone:
        topo.hosts[INTERNET_HOST] = LabHostSpec(INTERNET_HOST, "isp", None, forwarding=False)
        backbone.append(Attachment(INTERNET_HOST, BACKBONE_IFACE))
        topo.networks.append(Network("backbone", "backbone", tuple(backbone)))
    return on_internet
