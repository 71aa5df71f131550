"""The NIS2 asset register (`kastro inventory export`): every building, zone, link, uplink,
host and documented device with every field the model holds about it, as CSV, JSON or a
Greek/English HTML report to print.

A CSV cell that a spreadsheet would run as a formula is impossible: the register's texts are
refused at validation when they start with = + - @ (kastro.inventory.register), and every
other cell is a name, an address or a number Kastro made.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from typing import Any

from kastro.inventory.model import Model
from kastro.inventory.register import fields

COLUMNS = (
    "type", "name", "building", "zone", "role", "managed", "ipv4", "ipv6", "description",
    "services", "owner", "criticality", "legal_entity", "location", "vendor", "model", "os",
    "mac", "supplier", "contract",
)  # fmt: skip
HEADINGS = {
    "type": "Είδος / Type", "name": "Όνομα / Name", "building": "Κτίριο / Building",
    "zone": "Ζώνη / Zone", "role": "Ρόλος / Role", "managed": "Διαχείριση / Managed",
    "ipv4": "IPv4", "ipv6": "IPv6", "description": "Περιγραφή / Description",
    "services": "Υπηρεσίες / Services", "owner": "Υπεύθυνος / Owner",
    "criticality": "Κρισιμότητα / Criticality", "legal_entity": "Νομικό πρόσωπο / Legal entity",
    "location": "Τοποθεσία / Location", "vendor": "Κατασκευαστής / Vendor",
    "model": "Μοντέλο / Model", "os": "Λειτουργικό / OS", "mac": "MAC",
    "supplier": "Προμηθευτής / Supplier", "contract": "Σύμβαση / Contract",
}  # fmt: skip


def _row(**values: Any) -> dict[str, str]:
    return {column: str(values.get(column) or "") for column in COLUMNS}


def asset_rows(model: Model, plan: dict[str, Any]) -> list[dict[str, str]]:
    """NIS2 asset register: one row per asset, every field the model has for it."""
    entities = model.nis2.entities if model.nis2 else {}
    entity_of: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    for b in sorted(model.buildings.values(), key=lambda b: b.name):
        register = fields(b.register)
        entity_of[b.name] = register.get("legal_entity", "")
        rows.append(_row(
            type="building", name=b.name, building=b.name, role="city hall" if b.city_hall
            else "site", managed="yes", description=b.description, **register,
        ))  # fmt: skip
    for key, z in sorted(plan["zones"].items()):
        zone = model.buildings[z["building"]].zones[key.split(".", 1)[1]]
        text = f"{z['hosts']} devices" + (f"; {zone.description}" if zone.description else "")
        rows.append(_row(
            type="zone", name=key, building=z["building"], zone=key, role=z["kind"],
            managed="yes", ipv4=z["ipv4"], ipv6=z.get("ipv6", ""), description=text,
            legal_entity=entity_of.get(z["building"], ""),
        ))  # fmt: skip
    rows += _link_rows(model, plan)
    rows += _host_rows(model, plan, entity_of)
    for row in rows:
        if row["legal_entity"]:
            row["legal_entity"] = entities.get(row["legal_entity"], row["legal_entity"])
    return rows


def _link_rows(model: Model, plan: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, link in sorted(plan["links"].items()):
        register = fields(model.links[name].register) if name in model.links else {}
        rows.append(_row(
            type="link", name=name, building=" - ".join(sorted(link["ends"])),
            role=link["medium"], managed="yes", ipv4=link["ipv4"], ipv6=link.get("ipv6", ""),
            description=f"{link['capacity_mbps']} Mbit/s"
            + (", encrypted" if link["encrypted"] else ""), **register,
        ))  # fmt: skip
    if model.municipality:
        for up in model.municipality.uplinks:
            rows.append(_row(
                type="uplink", name=up.name, building=up.building, role="internet",
                managed="yes", description=f"{up.capacity_mbps} Mbit/s", supplier=up.provider,
                **fields(up.register),
            ))  # fmt: skip
    return rows


def _host_rows(
    model: Model, plan: dict[str, Any], entity_of: dict[str, str]
) -> list[dict[str, str]]:
    rows = []
    hosts = {h.name: h for h in model.hosts}
    for name, host in sorted(plan["hosts"].items()):
        router = plan["router_ids"].get(name, {})
        entry = hosts[name]
        register = {"legal_entity": entity_of.get(host["building"], ""),
                    **fields(entry.register)}  # fmt: skip
        rows.append(_row(
            type="host", name=name, building=host["building"], zone=host.get("zone", ""),
            role=host["role"], managed="yes", ipv4=host.get("ipv4", router.get("ipv4", "")),
            ipv6=host.get("ipv6", router.get("ipv6", "")), description=entry.description,
            services=" ".join(entry.services), **register,
        ))  # fmt: skip
    for b in sorted(model.buildings.values(), key=lambda b: b.name):
        for d in sorted(b.devices.values(), key=lambda d: d.name):
            register = {"legal_entity": entity_of.get(b.name, ""), **fields(d.register)}
            rows.append(_row(
                type="device", name=d.name, building=b.name, zone=f"{b.name}.{d.zone}",
                role=d.kind, managed="no (documented)", description=d.description,
                services=" ".join(d.services), **register,
            ))  # fmt: skip
    return rows


def export_assets(model: Model, plan: dict[str, Any], fmt: str) -> str:
    rows = asset_rows(model, plan)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return report(model, rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def report(model: Model, rows: list[dict[str, str]], today: dt.date | None = None) -> str:
    """The register as a page to print, sign and file: Greek first, English beside."""
    e = html.escape
    name = model.municipality.name if model.municipality else ""
    officer = model.nis2.security_officer if model.nis2 else {}
    day = (today or dt.date.today()).isoformat()
    used = [c for c in COLUMNS if any(r[c] for r in rows)]
    head = "".join(f"<th>{e(HEADINGS[c])}</th>" for c in used)
    body = "".join("<tr>" + "".join(f"<td>{e(r[c])}</td>" for c in used) + "</tr>\n" for r in rows)
    counts = {kind: sum(1 for r in rows if r["type"] == kind) for kind in dict.fromkeys(
        r["type"] for r in rows)}  # fmt: skip
    summary = ", ".join(f"{kind}: {n}" for kind, n in counts.items())
    return (
        '<!doctype html>\n<html lang="el"><head><meta charset="utf-8">'
        f"<title>Μητρώο παγίων / Asset register: {e(name)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;font-size:80%}"
        "td,th{border:1px solid #999;padding:2px 4px;text-align:left;vertical-align:top}"
        "</style></head><body>\n"
        f"<h1>Μητρώο παγίων ΤΠΕ / ICT asset register: {e(name)}</h1>\n"
        f"<p>Ν. 5160/2024 (NIS2), άρθρο 21 παρ. 2 στοιχ. θ / art. 21(2)(i). "
        f"Ημερομηνία / date: {e(day)}. {e(summary)}</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"
        "<p>Συσκευές «no (documented)»: καταγράφονται, δεν ρυθμίζονται από το Kastro / "
        "listed, not configured by Kastro.</p>\n"
        f"<p>Υπεύθυνος ασφάλειας ΤΠΕ / ICT security officer: {e(officer.get('name', ''))}"
        "</p>\n<p>Υπογραφή / signature: ......................................</p>\n"
        "</body></html>\n"
    )
