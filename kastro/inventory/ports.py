"""A gateway's physical ports, as the model describes them (``kastro_ports``), and what the
roles make of them.

A real municipal gateway has one or two ports with VLAN trunks, not one port per zone.
``kastro_ports`` (group_vars/all/ports.yml) describes each gateway's ports. Each port is
named by the admin (the name Kastro gives it, matched by its MAC address through a
systemd .link file, so a replaced NIC or a new kernel never renumbers the zones), may be a
bond of other ports, and carries zones and links untagged or on a VLAN:

    kastro_ports:
      cityhall-gw:
        lan: {mac: "52:54:00:10:00:01", zones: {management: untagged, staff: 10, servers: 20}}
        wan: {mac: "52:54:00:10:00:02", uplink: true}

The interface of a zone on VLAN 10 of port `lan` is `lan.10`. From the ports Kastro derives the
host's ``kastro_interfaces`` (zones, links, wan) and the list of VLANs and bonds the links
helper creates (``kastro_netdevs``); an inventory that sets kastro_interfaces itself (the
container lab: one veth per zone) keeps its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kastro.i18n import t
from kastro.inventory.loader import Path_, Source, shown
from kastro.inventory.register import MAC

PORT_FIELDS = ("mac", "bond", "zones", "links", "uplink", "description")
# NAME.VLAN must fit the kernel's 15 characters: ".4094" takes five.
PORT_NAME = re.compile(r"[a-z][a-z0-9]{0,9}")
UNTAGGED = "untagged"
MAX_VLAN = 4094
PORT_NAME_FIX = t(
    "use 1 to 10 lower-case letters and digits, starting with a letter (e.g. lan, wan, trunk0): "
    "with '.VLAN' after it the name must fit the kernel's 15 characters"
)
ATTACH_FIX = t("write 'untagged' or a VLAN id 1..{max}, e.g. staff: 10", max=MAX_VLAN)


@dataclass(frozen=True)
class Nic:
    """One port of a gateway: its name, MAC, bond members and what rides on it (name → VLAN
    id, 0 = untagged)."""

    name: str
    mac: str = ""
    bond: tuple[str, ...] = ()
    zones: tuple[tuple[str, int], ...] = ()
    links: tuple[tuple[str, int], ...] = ()
    uplink: bool = False
    description: str = ""

    def interface(self, vlan: int) -> str:
        return f"{self.name}.{vlan}" if vlan else self.name

    @property
    def carries(self) -> tuple[tuple[str, int], ...]:
        return (*self.zones, *self.links, *((("uplink", 0),) if self.uplink else ()))


def parse_all_ports(src: Source, raw: Any) -> dict[str, tuple[Nic, ...]]:
    """``kastro_ports``: each gateway's ports (checked against the buildings by validate)."""
    if not isinstance(raw, dict):
        src.error(
            ("kastro_ports",),
            t("must map gateways to their ports"),
            t("e.g. kastro_ports: {{cityhall-gw: {{lan: {{zones: {{staff: untagged}}}}}}}}"),
        )
        return {}
    return {
        str(host): parse_ports(src, ("kastro_ports", str(host)), ports)
        for host, ports in raw.items()
    }


def parse_ports(src: Source, path: Path_, raw: Any) -> tuple[Nic, ...]:
    """The ports of one gateway; every bad field recorded in `src` (and left out)."""
    if not isinstance(raw, dict) or not raw:
        src.error(
            path,
            t("must map port names to their settings"),
            t("e.g. ports: {{lan: {{mac: '52:54:00:10:00:01', zones: {{staff: untagged}}}}}}"),
        )
        return ()
    out = []
    for name, entry in raw.items():
        nic = _port(src, (*path, str(name)), str(name), entry)
        if nic is not None:
            out.append(nic)
    return tuple(out)


def _port(src: Source, path: Path_, name: str, raw: Any) -> Nic | None:
    if not PORT_NAME.fullmatch(name):
        src.error(path, t("'{name}' is not a valid port name", name=shown(name)), PORT_NAME_FIX)
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        src.error(
            path, t("must be a mapping"), t("write mac:, bond:, zones:, links:, uplink: under it")
        )
        return None
    ok = True
    for key in raw:
        if key not in PORT_FIELDS:
            src.error(
                (*path, str(key)),
                t("is not a known field"),
                t("allowed fields here: {fields}", fields=", ".join(PORT_FIELDS)),
            )
            ok = False
    mac = _mac(src, path, raw.get("mac"))
    bond = _bond(src, path, raw.get("bond"))
    zones = _attachments(src, (*path, "zones"), raw.get("zones"))
    links = _attachments(src, (*path, "links"), raw.get("links"))
    uplink = raw.get("uplink", False)
    if not isinstance(uplink, bool):
        src.error(
            (*path, "uplink"),
            t("must be true or false"),
            t("write uplink: true on the port of the building's (first) uplink"),
        )
        ok = False
    description = raw.get("description") or ""
    if None in (mac, bond, zones, links) or not ok:
        return None
    assert mac is not None and bond is not None and zones is not None and links is not None
    return Nic(name, mac, bond, zones, links, bool(uplink), str(description))


def _mac(src: Source, path: Path_, raw: Any) -> str | None:
    if raw is None:
        return ""
    text = str(raw).strip().lower().replace("-", ":")
    if not MAC.fullmatch(text):
        src.error(
            (*path, "mac"),
            t("'{value}' is not a MAC address", value=shown(str(raw))),
            t(
                "write the port's address as six pairs of hex digits, e.g. '52:54:00:10:00:01' "
                "(in quotes), as 'ip link' shows it"
            ),
        )
        return None
    return text


def _bond(src: Source, path: Path_, raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(m, str) for m in raw):
        src.error(
            (*path, "bond"),
            t("must list two or more ports of this gateway"),
            t("e.g. bond: [nic1, nic2], each of them a port with its own mac: and nothing else"),
        )
        return None
    return tuple(raw)


def _attachments(src: Source, path: Path_, raw: Any) -> tuple[tuple[str, int], ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        src.error(
            path,
            t("must map names to 'untagged' or a VLAN id"),
            t("e.g. zones: {{management: untagged, staff: 10}}"),
        )
        return None
    out = []
    for name, value in raw.items():
        if value == UNTAGGED:
            out.append((str(name), 0))
        elif isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VLAN:
            out.append((str(name), value))
        else:
            src.error(
                (*path, str(name)),
                t("'{value}' is neither 'untagged' nor a VLAN id", value=shown(str(value))),
                ATTACH_FIX,
            )
            return None
    return tuple(out)


def port_problems(
    ports: tuple[Nic, ...],
    zones: set[str],
    links: Mapping[str, bool],
    has_uplink: bool,
    uplink_ports: frozenset[str] = frozenset(),
) -> Iterator[tuple[Path_, str, str]]:
    """(path under ports, problem, fix) for a gateway's ports against its building: `zones`
    are the building's zones, `links` its links (True: over the internet, riding on the
    uplink), `uplink_ports` the ports further uplinks name as their interface."""
    by_name = {nic.name: nic for nic in ports}
    yield from _bond_problems(ports, by_name, uplink_ports)
    yield from _vlan_problems(ports)
    yield from _mac_problems(ports)
    placed: dict[tuple[str, str], str] = {}
    for nic in ports:
        for section, attached, known in (("zones", nic.zones, zones), ("links", nic.links, links)):
            for name, vlan in attached:
                where = (nic.name, section, name)
                if name not in known:
                    yield where, _not_here(section, name), _use_one(known)
                elif section == "links" and links[name]:
                    yield (
                        where,
                        t(
                            "link '{name}' runs over the internet: it rides on the uplink",
                            name=name,
                        ),
                        t("remove it here; the uplink's port carries it"),
                    )
                elif (section, name) in placed:
                    yield (
                        where,
                        t("is also on port '{other}'", other=placed[(section, name)]),
                        t("attach each zone and link to one port only"),
                    )
                else:
                    placed[(section, name)] = nic.interface(vlan)
    for zone in sorted(zones - {name for (section, name) in placed if section == "zones"}):
        yield (
            (),
            t(
                "zone '{zone}' is on no port: it would have no interface and no anti-spoofing",
                zone=zone,
            ),
            t("add '{zone}: untagged' or '{zone}: VLAN' under the zones: of one port", zone=zone),
        )
    wanted_links = {name for name, internet in links.items() if not internet}
    for link in sorted(wanted_links - {name for (section, name) in placed if section == "links"}):
        yield (
            (),
            t("link '{link}' is on no port", link=link),
            t(
                "add '{link}: untagged' or '{link}: VLAN' under the links: of the port its cable "
                "or radio is on",
                link=link,
            ),
        )
    yield from _uplink_problems(ports, has_uplink)


def _not_here(section: str, name: str) -> str:
    if section == "zones":
        return t("this building has no zone '{name}'", name=name)
    return t("no link of this building is called '{name}'", name=name)


def _use_one(known: object) -> str:
    names = sorted(known)  # type: ignore[call-overload]
    if not names:
        return t("remove it: there is none to choose from")
    return t("use one of: {names}", names=", ".join(names))


def _bond_problems(
    ports: tuple[Nic, ...], by_name: dict[str, Nic], uplink_ports: frozenset[str]
) -> Iterator[tuple[Path_, str, str]]:
    member_of: dict[str, str] = {}
    for nic in ports:
        if nic.bond and nic.mac:
            yield (
                (nic.name, "mac"),
                t("a bond takes its members' addresses"),
                t("remove mac: here; give each member port its mac:"),
            )
        for member in nic.bond:
            other = by_name.get(member)
            if other is None or member == nic.name:
                yield (
                    (nic.name, "bond"),
                    t("'{member}' is not another port of this gateway", member=shown(member)),
                    _use_one(set(by_name) - {nic.name}),
                )
            elif other.bond or other.carries or member in uplink_ports:
                yield (
                    (nic.name, "bond"),
                    t("member '{member}' carries zones, links or a bond of its own", member=member),
                    t("a member port has only its mac:; put zones and links on the bond"),
                )
            elif member in member_of:
                yield (
                    (nic.name, "bond"),
                    t(
                        "'{member}' is already in bond '{other}'",
                        member=member,
                        other=member_of[member],
                    ),
                    t("a port can be in one bond only"),
                )
            else:
                member_of[member] = nic.name
    for nic in ports:
        used = nic.carries or nic.name in uplink_ports or nic.name in member_of
        if not nic.bond and not used:
            yield (
                (nic.name,),
                t("carries nothing"),
                t(
                    "attach zones, links or the uplink to it, make it a member of a bond, or "
                    "remove it"
                ),
            )


def _vlan_problems(ports: tuple[Nic, ...]) -> Iterator[tuple[Path_, str, str]]:
    for nic in ports:
        seen: dict[int, str] = {}
        for name, vlan in nic.carries:
            if vlan in seen:
                what = t("untagged") if vlan == 0 else t("VLAN {vlan}", vlan=vlan)
                yield (
                    (nic.name,),
                    t(
                        "{what} carries both '{one}' and '{other}'",
                        what=what,
                        one=seen[vlan],
                        other=name,
                    ),
                    t(
                        "give each zone and link of a port its own VLAN id; at most one of "
                        "them untagged"
                    ),
                )
            seen[vlan] = name


def _mac_problems(ports: tuple[Nic, ...]) -> Iterator[tuple[Path_, str, str]]:
    seen: dict[str, str] = {}
    for nic in ports:
        if nic.mac and nic.mac in seen:
            yield (
                (nic.name, "mac"),
                t("is also the MAC of port '{other}'", other=seen[nic.mac]),
                t("each port has its own MAC address: check 'ip link' on the gateway"),
            )
        elif nic.mac:
            seen[nic.mac] = nic.name


def _uplink_problems(ports: tuple[Nic, ...], has_uplink: bool) -> Iterator[tuple[Path_, str, str]]:
    on = [nic.name for nic in ports if nic.uplink]
    if len(on) > 1:
        yield (
            (on[1], "uplink"),
            t("the uplink is already on port '{other}'", other=on[0]),
            t("set uplink: true on one port only (a second ISP names its own interface)"),
        )
    if on and not has_uplink:
        yield (
            (on[0], "uplink"),
            t("this building has no uplink in kastro_municipality.uplinks"),
            t("remove uplink: true, or add the building's uplink"),
        )
    if has_uplink and not on:
        yield (
            (),
            t("no port carries the building's uplink"),
            t("set uplink: true on the port the ISP's line is plugged into"),
        )


# --- what the roles read ---------------------------------------------------------------------


def interfaces(ports: tuple[Nic, ...]) -> dict[str, Any]:
    """``kastro_interfaces`` derived from the ports (zones, links, wan)."""
    out: dict[str, Any] = {"zones": {}, "links": {}}
    for nic in ports:
        for zone, vlan in nic.zones:
            out["zones"][zone] = nic.interface(vlan)
        for link, vlan in nic.links:
            out["links"][link] = nic.interface(vlan)
        if nic.uplink:
            out["wan"] = nic.name
    return out


def netdevs(ports: tuple[Nic, ...]) -> dict[str, Any]:
    """``kastro_netdevs``: the names to give by MAC (.link files), the bonds and the VLANs to
    create, in an order the kernel accepts (bonds before the VLANs on them)."""
    return {
        "names": [{"name": nic.name, "mac": nic.mac} for nic in ports if nic.mac],
        "bonds": [{"name": nic.name, "members": list(nic.bond)} for nic in ports if nic.bond],
        "vlans": [
            {"name": nic.interface(vlan), "parent": nic.name, "vlan": vlan}
            for nic in ports
            for _, vlan in nic.carries
            if vlan
        ],
    }


def raw_ports(raw: Any, host: str) -> tuple[Nic, ...]:
    """A gateway's ports as the model files hold them (``kastro_ports``, already validated by
    the first play): for the vars plugin, which reads the files, not the parsed model."""
    if not isinstance(raw, dict) or host not in raw:
        return ()
    src = Source(inventory=Path())
    ports = parse_ports(src, (), raw[host])
    return () if src.errors else ports
