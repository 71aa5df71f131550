"""`kastro init NAME --domain DOMAIN`: a commented starter inventory that validates.

One city hall with the usual zones and a gateway, the common services and a policy a
municipality can start from; every file says what it holds and where the schema is
(docs/inventory.md). The names and the domain are checked like the model's own fields before
anything is written, and an existing directory is never overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path

from kastro.i18n import t

# A directory name the admin can type and Ansible can read: lower-case letters, digits, '-'.
NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
SUPERNET_V4 = "10.20.0.0/16"
SUPERNET_V6 = "fd00:20::/48"


class StarterError(ValueError):
    """The name, the domain or the target directory cannot be used; the message says why."""


def starter_files(title: str, domain: str) -> dict[str, str]:
    """Relative path -> text of every file of a new inventory (before `kastro apply`)."""
    header = (
        "---\n# {what}\n# Σχήμα / Schema: docs/el/inventory.md (docs/inventory.md). Μετά από "
        "αλλαγή / after a change:\n#   kastro plan -i INVENTORY && kastro apply -i INVENTORY\n"
    )
    return {
        "group_vars/all/municipality.yml": header.format(
            what=f"{title}: ο δήμος / the municipality."
        )
        + f"""kastro_municipality:
  name: {_quoted(title)}
  domain: {domain}
  supernets:
    - {SUPERNET_V4}              # όλος ο χώρος IPv4 του δήμου / all municipal IPv4: yours here
    - {SUPERNET_V6}              # IPv6 unique-local (ένα /64 ανά ζώνη): ένα δικό σας τυχαίο /48
  uplinks:
    - name: isp-1
      building: cityhall
      provider: your ISP
      capacity_mbps: 100
  mtu: 1500
  # Ενημερώσεις ασφαλείας / security updates: κάθε υπολογιστής απευθείας από τα mirrors· με
  # διακομιστές, καλύτερα μέσω της cache apt ενός από αυτούς / with servers, better through
  # the apt cache on one of them:  updates: {{cache: SERVER}}
  updates: {{direct: true}}
""",
        "group_vars/all/buildings.yml": header.format(
            what="Κτίρια, ζώνες (πόσες συσκευές η καθεμία), υπολογιστές / buildings, zones, hosts."
        )
        + """# Είδη ζωνών / zone kinds: staff, servers, voip, cctv, iot, guest, management.
# Ρόλοι / host roles: gateway (μία ανά κτίριο / one per building), server, sensor, endpoint.
kastro_buildings:
  cityhall:
    description: Δημαρχείο - city hall
    city_hall: true
    zones:
      staff: {hosts: 60}
      servers: {hosts: 10}
      guest: {hosts: 50}
      management: {hosts: 8}
    hosts:
      cityhall-gw: {role: gateway}
""",
        "group_vars/all/ports.yml": header.format(
            what="Οι θύρες κάθε πύλης (VLAN, bonds) / each gateway's ports (VLANs, bonds)."
        )
        + """# Η MAC κάθε θύρας όπως τη δείχνει το 'ip link'· κάθε ζώνη σε μία θύρα, untagged ή σε
# VLAN / each port's MAC as 'ip link' shows it; every zone on one port, untagged or a VLAN:
#   cityhall-gw:
#     lan: {mac: "aa:bb:cc:dd:ee:01", zones: {management: untagged, staff: 10, guest: 50}}
#     wan: {mac: "aa:bb:cc:dd:ee:02", uplink: true}
kastro_ports: {}
""",
        "group_vars/all/links.yml": header.format(
            what="Συνδέσεις μεταξύ κτιρίων / links between buildings."
        )
        + """# e.g.  cityhall-kep: {ends: [cityhall, kep], medium: fibre, capacity_mbps: 1000}
kastro_links: {}
""",
        "group_vars/all/policy.yml": header.format(
            what="Υπηρεσίες και ποιος φτάνει τι· τα υπόλοιπα απορρίπτονται / services and policy."
        )
        + """kastro_services:
  web: {ports: [tcp/80, tcp/443], description: HTTP and HTTPS}
  dns: {ports: [udp/53, tcp/53], description: name resolution}
  file-sharing: {ports: [tcp/445], description: SMB (Windows file shares)}
  ssh: {ports: [tcp/22], description: administration}

kastro_policy:
  - from: staff
    to: cityhall.servers
    services: [web, dns, file-sharing]
    comment: office work on the city-hall servers
  - from: staff
    to: internet
    services: [web]
  - from: guest
    to: internet
    services: [web, dns]
    comment: visitors get internet only, never municipal networks
  - from: management
    to: [staff, servers]
    services: [ssh]
    comment: IT administration
""",
        "group_vars/all/teleworkers.yml": header.format(
            what="Τηλεργαζόμενοι / people who work from home."
        )
        + """# e.g.  finance: {description: finance department}
kastro_teleworker_groups: {}
# e.g.  - {id: tw-0001, name: Eleni Kostopoulou, group: finance}
kastro_teleworkers: []
""",
        "group_vars/all/base.yml": header.format(
            what="Βάση κάθε υπολογιστή (ρόλος base) / baseline of every host."
        )
        + f"""base_domain: {domain}
base_timezone: Europe/Athens
# Οι διαχειριστές: τα δημόσια κλειδιά SSH τους είναι η μόνη είσοδος (κωδικοί απορρίπτονται).
# The administrators: their SSH public keys are the only way in (passwords are refused).
base_admin_users: []
#  - name: nikos
#    comment: Nikos Georgiou, IT department
#    ssh_keys: ["ssh-ed25519 AAAA... nikos@cityhall"]
""",
        "hosts.yml": """---
# Δικοί σας υπολογιστές και ομάδες (Windows PC, εκτυπωτές, PLC...): γράφονται εδώ και δεν
# ρυθμίζονται ποτέ από τα playbooks του Kastro.
# Your own hosts and groups (Windows PCs, printers, PLCs...): listed here, never configured
# by Kastro's playbooks (they target kastro_managed, which 'kastro apply' writes to
# kastro_hosts.yml from the model).
all: {}
""",
    }


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_starter(target: Path, title: str, domain: str) -> list[Path]:
    """The starter inventory in `target` (a new directory); returns the files written."""
    if not NAME.fullmatch(target.name):
        raise StarterError(
            t(
                "'{name}': name the directory with lower-case letters, digits and '-', "
                "e.g. inventory/dimos-kastrou",
                name=target.name,
            )
        )
    if not DOMAIN.fullmatch(domain):
        raise StarterError(
            t(
                "--domain '{domain}': give the municipality's DNS domain, e.g. kastro.gov.gr",
                domain=domain,
            )
        )
    if not title.strip() or any(ord(c) < 32 for c in title):
        raise StarterError(t('--title: one line of text, e.g. "Dimos Kastrou"'))
    if target.exists():
        raise StarterError(
            t(
                "{target} exists: Kastro never overwrites an inventory; choose a new name",
                target=target,
            )
        )
    written = []
    for relative, text in starter_files(title, domain).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
