"""The topology picture (Graphviz DOT): a wall chart of the whole municipality, and views of
one building or one district for municipalities too large for one picture.

The overview draws every building with its zones, servers and fixed devices, the internet
with each uplink's provider, the teleworkers' pools at the city hall, and a legend. Past
OVERVIEW_LIMIT buildings that picture is a hairball, so the overview becomes one node per
district (`district` of kastro_buildings) with the links between districts added up, or, with
no districts, the buildings without their zones; `--building` and `--district` give the detail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from kastro.i18n import t, tr
from kastro.inventory.model import Building, Model

OVERVIEW_LIMIT = 40  # buildings drawn with their zones in one picture
NO_DISTRICT = "-"
CITY_HALL_COLOUR, BUILDING_COLOUR, OUTSIDE_COLOUR = "#d9e8f5", "#f4f1ea", "#ffffff"
STYLES = {"radio": "dashed", "leased": "dotted"}  # fibre and copper: solid
LEGEND = (
    "Υπόμνημα / Legend",
    "συνεχής: ίνα, χαλκός / solid: fibre, copper",
    "διακεκομμένη: ασύρματη / dashed: radio",
    "τελείες: μισθωμένη / dotted: leased line",
    "πάχος: ταχύτητα / width: speed",
    "(WireGuard): κρυπτογραφημένη / encrypted",
    "μπλε: δημαρχείο / blue: city hall",
)


class ViewError(ValueError):
    """A view of something the model does not have; the message names what there is."""


def topology_dot(model: Model, plan: dict[str, Any], building: str = "", district: str = "") -> str:
    """The picture: the overview, or the view of one building or one district."""
    if building and district:
        raise ViewError(t("give --building or --district, not both"))
    picture = _Picture(model, plan)
    if building:
        picture.building_view(_known_building(model, building))
    elif district:
        picture.district_view(_known_district(model, district))
    elif len(model.buildings) <= OVERVIEW_LIMIT:
        picture.overview()
    elif any(b.district for b in model.buildings.values()):
        picture.districts_overview()
    else:
        picture.compact_overview()
    return picture.text()


def districts(model: Model) -> list[str]:
    return sorted({b.district or NO_DISTRICT for b in model.buildings.values()})


def _known_building(model: Model, name: str) -> Building:
    if name not in model.buildings:
        raise ViewError(
            t("no building '{name}'; the buildings are: {names}",
              name=name, names=", ".join(sorted(model.buildings)))
        )  # fmt: skip
    return model.buildings[name]


def _known_district(model: Model, name: str) -> str:
    if name not in districts(model) or name == NO_DISTRICT:
        named = ", ".join(d for d in districts(model) if d != NO_DISTRICT)
        none = t("none (district: of kastro_buildings)")
        raise ViewError(t("no district '{name}'; the districts are: {names}", name=name,
                          names=named or none))  # fmt: skip
    return name


def _esc(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


class _Picture:
    def __init__(self, model: Model, plan: dict[str, Any]) -> None:
        self.model, self.plan = model, plan
        title = model.municipality.name if model.municipality else ""
        self.lines = [
            "graph municipality {",
            f'  label="{_esc(title)}"; labelloc=t; fontname="Helvetica";',
            '  layout=neato; overlap=false; sep="+24"; esep="+12"; splines=true;',
            '  node [shape=box, style="rounded,filled", fillcolor="#f4f1ea", fontname="Helvetica",'
            " fontsize=11];",
            '  edge [fontname="Helvetica", fontsize=9, len=3.8];',
        ]

    def text(self) -> str:
        return "\n".join([*self.lines, "}"]) + "\n"

    # --- the views -------------------------------------------------------------------------

    def overview(self) -> None:
        buildings = sorted(self.model.buildings)
        for name in buildings:
            self.detailed(self.model.buildings[name])
        self.links(buildings)
        self.internet(buildings)
        self.teleworkers(buildings)
        self.legend()

    def compact_overview(self) -> None:
        buildings = sorted(self.model.buildings)
        self.note(
            t("{count} buildings: for zones and addresses, 'kastro show graph --building NAME', "
              "or give buildings a district", count=len(buildings))
        )  # fmt: skip
        for name in buildings:
            self.compact(self.model.buildings[name])
        self.links(buildings)
        self.internet(buildings)
        self.legend()

    def building_view(self, building: Building) -> None:
        self.detailed(building)
        neighbours = sorted(
            {end for link in self._links() for end in link["ends"] if building.name in link["ends"]}
            - {building.name}
        )
        for name in neighbours:
            self.compact(self.model.buildings[name], outside=True)
        self.links([building.name, *neighbours], touching=building.name)
        self.internet([building.name])
        self.teleworkers([building.name])
        self.legend()

    def district_view(self, district: str) -> None:
        inside = sorted(n for n, b in self.model.buildings.items() if b.district == district)
        detailed = len(inside) <= OVERVIEW_LIMIT
        for name in inside:
            (self.detailed if detailed else self.compact)(self.model.buildings[name])
        outside = sorted(
            {e for link in self._links() for e in link["ends"] if set(link["ends"]) & set(inside)}
            - set(inside)
        )
        for name in outside:
            self.compact(self.model.buildings[name], outside=True)
        self.links(inside + outside, touching_any=set(inside))
        self.internet(inside)
        self.teleworkers(inside)
        self.legend()

    def districts_overview(self) -> None:
        members = Counter(b.district or NO_DISTRICT for b in self.model.buildings.values())
        hall = next((b for b in self.model.buildings.values() if b.city_hall), None)
        self.note(
            t("{count} buildings in {districts} districts: 'kastro show graph --district NAME' "
              "draws one", count=len(self.model.buildings), districts=len(members))
        )  # fmt: skip
        for name, count in sorted(members.items()):
            colour = CITY_HALL_COLOUR if hall and (hall.district or NO_DISTRICT) == name else ""
            label = f"{_esc(name)}\\n" + tr(t("{count} buildings", count=count))
            self.node(f"district:{name}", label, fillcolor=colour or BUILDING_COLOUR)
        between: dict[tuple[str, str], list[int]] = {}
        for link in self._links():
            a, b = (self.model.buildings[e].district or NO_DISTRICT for e in link["ends"])
            if a != b:
                between.setdefault((min(a, b), max(a, b)), []).append(link["capacity_mbps"])
        for (a, b), speeds in sorted(between.items()):
            label = tr(t("{count} links, {mbps} Mbit/s", count=len(speeds), mbps=sum(speeds)))
            self.edge(f"district:{a}", f"district:{b}", label, penwidth=1 + min(len(speeds), 6))
        uplinks = self.model.municipality.uplinks if self.model.municipality else ()
        if uplinks:
            self.node("internet", "Διαδίκτυο / Internet", shape="ellipse", fillcolor="#ffffff")
        for uplink in uplinks:
            district = self.model.buildings[uplink.building].district or NO_DISTRICT
            self.edge(f"district:{district}", "internet", self._uplink_label(uplink), style="bold")
        self.legend()

    # --- the parts ---------------------------------------------------------------------------

    def detailed(self, building: Building) -> None:
        zones = self.plan.get("zones") or {}
        lines = [
            f"{z.name}: {zones.get(z.key, {}).get('ipv4', '?')}"
            for z in sorted(building.zones.values(), key=lambda z: z.name)
        ]
        seats = [
            f"{h.name} ({h.role}) {self._address('hosts', h.name)}"
            for h in sorted(building.hosts.values(), key=lambda h: h.name)
            if h.role != "gateway"
        ]
        seats += [
            f"{d.name} ({d.kind}) {self._address('devices', d.name)}"
            for d in sorted(building.devices.values(), key=lambda d: d.name)
            if d.fixed_address
        ]
        body = "\\l".join(_esc(line) for line in [*lines, *(["", *seats] if seats else [])])
        colour = CITY_HALL_COLOUR if building.city_hall else BUILDING_COLOUR
        self.node(building.name, f"{self._title(building)}\\n\\n{body}\\l", fillcolor=colour)

    def compact(self, building: Building, outside: bool = False) -> None:
        colour = CITY_HALL_COLOUR if building.city_hall else BUILDING_COLOUR
        extra = f"\\n({_esc(building.district)})" if outside and building.district else ""
        self.node(
            building.name, self._title(building) + extra,
            fillcolor=OUTSIDE_COLOUR if outside else colour, style="rounded,filled,dashed"
            if outside else "rounded,filled",
        )  # fmt: skip

    def links(
        self, drawn: Iterable[str], touching: str = "", touching_any: set[str] | None = None
    ) -> None:
        shown = set(drawn)
        for name, link in sorted((self.plan.get("links") or {}).items()):
            a, b = link["ends"]
            if not {a, b} <= shown or (touching and touching not in (a, b)):
                continue
            if touching_any is not None and not {a, b} & touching_any:
                continue
            lock = " (WireGuard)" if link.get("encrypted") else ""
            label = f"{name}\\n{link['capacity_mbps']} Mbit/s {link['medium']}{lock}"
            width = 1 + min(int(link["capacity_mbps"]), 10_000) / 2_500
            self.edge(a, b, label, style=STYLES.get(link["medium"], "solid"),
                      penwidth=f"{width:.1f}")  # fmt: skip

    def internet(self, buildings: Iterable[str]) -> None:
        here = set(buildings)
        uplinks = [
            u
            for u in (self.model.municipality.uplinks if self.model.municipality else ())
            if u.building in here
        ]
        if not uplinks:
            return
        self.node("internet", "Διαδίκτυο / Internet", shape="ellipse", fillcolor="#ffffff")
        for uplink in uplinks:
            self.edge(uplink.building, "internet", self._uplink_label(uplink), style="bold")

    def teleworkers(self, buildings: Iterable[str]) -> None:
        hall = next((b for b in self.model.buildings.values() if b.city_hall), None)
        pools = self.plan.get("vpn_pools") or {}
        if hall is None or hall.name not in set(buildings) or not pools:
            return
        lines = [f"{group}: {pool.get('ipv4', '')}" for group, pool in sorted(pools.items())]
        label = "Τηλεργαζόμενοι / Teleworkers\\n" + "\\l".join(map(_esc, lines)) + "\\l"
        self.node("teleworkers", label, shape="note", fillcolor="#ffffff")
        self.edge("teleworkers", hall.name, "VPN (WireGuard, OpenVPN)", style="dotted")

    def legend(self) -> None:
        self.node("legend", "\\l".join(LEGEND) + "\\l", shape="note", fillcolor="#ffffff",
                  fontsize="9")  # fmt: skip

    def note(self, text: str) -> None:
        self.lines[1] = self.lines[1].replace('";', f'\\n{_esc(tr(text))}";', 1)

    # --- helpers -----------------------------------------------------------------------------

    def node(self, name: str, label: str, **attrs: Any) -> None:
        extra = "".join(f', {k}="{v}"' for k, v in attrs.items())
        self.lines.append(f'  "{_esc(name)}" [label="{label}"{extra}];')

    def edge(self, a: str, b: str, label: str, **attrs: Any) -> None:
        """A line from a to b with its label as a small node of its own in the middle: the
        layout then keeps labels off the buildings as it keeps buildings off each other."""
        extra = "".join(f', {k}="{v}"' for k, v in attrs.items())
        middle = f"link:{a}:{b}:{len(self.lines)}"
        self.lines.append(
            f'  "{_esc(middle)}" [label="{label}", shape=plaintext, style="", fontsize=9];'
        )
        self.lines.append(f'  "{_esc(a)}" -- "{_esc(middle)}" [len=1.9{extra}];')
        self.lines.append(f'  "{_esc(middle)}" -- "{_esc(b)}" [len=1.9{extra}];')

    def _links(self) -> list[dict[str, Any]]:
        return list((self.plan.get("links") or {}).values())

    def _title(self, building: Building) -> str:
        return _esc(building.name) + (
            f"\\n{_esc(building.description)}" if building.description else ""
        )

    def _address(self, section: str, name: str) -> str:
        return str(((self.plan.get(section) or {}).get(name) or {}).get("ipv4", ""))

    @staticmethod
    def _uplink_label(uplink: Any) -> str:
        provider = f"{uplink.provider}, " if uplink.provider else ""
        return _esc(f"{uplink.name}: {provider}{uplink.capacity_mbps} Mbit/s")
