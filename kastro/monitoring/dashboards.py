"""Grafana dashboards of a municipality, generated from code (grafana-foundation-sdk).

Grafana itself is not installed by Kastro: the dashboards are JSON files to import into the
municipality's or the regional SOC's Grafana (`kastro dashboards DIRECTORY`). Every panel's
query is PromQL over the metrics Kastro's exporters publish, with the labels every target
carries (municipality, building, zone, role, host); tests run each query against the lab's
real Prometheus (tests/lab/test_alerting.py) and check it parses (promtool).

Titles are Greek first, then English, like everything an admin reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# A template variable's value in a query; the tests put a real building in its place.
BUILDING = "$building"


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    unit: str = "short"
    legend: str = ""
    kind: str = "timeseries"  # timeseries, stat, table


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    per_building: bool = False


BOARDS: tuple[Board, ...] = (
    Board(
        "kastro-overview",
        "Δήμος: επισκόπηση / Municipality overview",
        (
            Panel("Στόχοι που απαντούν / Targets up", "sum(up)", kind="stat"),
            Panel("Στόχοι εκτός / Targets down", "count(up == 0) or vector(0)", kind="stat"),
            Panel("Ενεργές ειδοποιήσεις / Firing alerts",
                  'count(ALERTS{alertstate="firing"}) or vector(0)', kind="stat"),
            Panel("Διαθεσιμότητα ανά κτίριο / Share of targets up by building",
                  "avg by (building) (up)", "percentunit", "{{building}}"),
            Panel("Επιθέσεις ανά ανιχνευτή (1 ώρα) / Attacks by detector (1 h)",
                  "sum by (detector) (increase(kastro_monitor_alerts_total[1h]))", "short",
                  "{{detector}}"),
            Panel("Ζεύξεις πάνω / Links up", "max by (link) (kastro_link_up)", "short",
                  "{{link}}"),
        ),
    ),
    Board(
        "kastro-building",
        "Κτίριο / Building",
        (
            Panel("Υπολογιστές που απαντούν / Hosts up",
                  f'up{{job="node", building="{BUILDING}"}}', "short", "{{host}}"),
            Panel("Φορτίο CPU / CPU busy",
                  f'1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle", '
                  f'building="{BUILDING}"}}[5m]))', "percentunit", "{{host}}"),
            Panel("Ελεύθερη μνήμη / Memory available",
                  f'node_memory_MemAvailable_bytes{{building="{BUILDING}"}}', "bytes",
                  "{{host}}"),
            Panel("Ελεύθερος δίσκος / Disk free",
                  f'min by (host) (node_filesystem_avail_bytes{{building="{BUILDING}", '
                  f'fstype!~"tmpfs|overlay|squashfs"}} / node_filesystem_size_bytes{{'
                  f'building="{BUILDING}", fstype!~"tmpfs|overlay|squashfs"}})',
                  "percentunit", "{{host}}"),
            Panel("Υπηρεσίες (blackbox) / Services",
                  f'probe_success{{job="blackbox-services", building="{BUILDING}"}} '
                  f'or probe_success{{job="blackbox-links", building="{BUILDING}"}}', "short",
                  "{{host}} {{service}}{{link}}"),
        ),
        per_building=True,
    ),
    Board(
        "kastro-links",
        "Ζεύξεις μεταξύ κτιρίων / Links between buildings",
        (
            Panel("Πάνω / Up", "max by (link) (kastro_link_up)", "short", "{{link}}"),
            Panel("Χρόνος απόκρισης / Round-trip time",
                  "max by (link) (kastro_link_rtt_seconds)", "s", "{{link}}"),
            Panel("Απώλειες / Loss", "max by (link) (kastro_link_probe_loss_ratio)",
                  "percentunit", "{{link}}"),
            Panel("Κίνηση προς τα έξω / Traffic out",
                  "sum by (host, link) (rate(kastro_link_transmit_bytes_total[5m]))", "Bps",
                  "{{host}} {{link}}"),
            Panel("Χρήση χωρητικότητας / Share of capacity",
                  "max by (link) (rate(kastro_link_transmit_bytes_total[5m]) "
                  "/ kastro_link_capacity_bytes_per_second)", "percentunit", "{{link}}"),
            Panel("Γείτονες OSPF / OSPF neighbours full",
                  "kastro_ospf_neighbor_full", "short", "{{host}} {{link}}"),
        ),
    ),
    Board(
        "kastro-vpn",
        "Τηλεργασία (VPN) / Telework VPN",
        (
            Panel("Ο διακομιστής VPN απαντά / VPN server readable", "kastro_telework_up",
                  kind="stat"),
            Panel("Ενεργοί εργαζόμενοι (χειραψία < 3 λεπτά) / Active teleworkers",
                  "count(kastro_telework_peer_handshake_age_seconds < 180) or vector(0)",
                  kind="stat"),
            Panel("Κίνηση ανά εργαζόμενο / Traffic per teleworker",
                  "sum by (teleworker) (rate(kastro_telework_peer_received_bytes_total[5m]))",
                  "Bps", "{{teleworker}}"),
            Panel("Τελευταία χειραψία / Last handshake age",
                  "kastro_telework_peer_handshake_age_seconds", "s", "{{teleworker}}",
                  kind="table"),
        ),
    ),
    Board(
        "kastro-firewall",
        "Τείχη προστασίας / Firewalls",
        (
            Panel("Κανόνες σε ισχύ / Ruleset loaded", "kastro_firewall_up", "short", "{{host}}"),
            Panel("Απορρίψεις ανά υπολογιστή / Drops by host",
                  'sum by (host) (rate(kastro_firewall_packets_total{counter=~"drop.*"}[5m]))',
                  "pps", "{{host}}"),
            Panel("Αποκλεισμένες διευθύνσεις / Blocked addresses",
                  "sum by (host) (kastro_firewall_set_elements)", "short", "{{host}}"),
            Panel("Αλλαγή σε αναμονή / Change pending confirmation",
                  "max by (host) (kastro_firewall_change_pending)", "short", "{{host}}",
                  kind="table"),
        ),
    ),
    Board(
        "kastro-soc",
        "SOC: ειδοποιήσεις / SOC alerts",
        (
            Panel("Ενεργές ειδοποιήσεις / Firing alerts",
                  'sum by (alertname, severity, building) (ALERTS{alertstate="firing"})',
                  "short", "{{alertname}} {{building}}", kind="table"),
            Panel("Ειδοποιήσεις αισθητήρων (5 λεπτά) / Sensor alerts (5 min)",
                  "sum by (host, detector) (increase(kastro_monitor_alerts_total[5m]))", "short",
                  "{{host}} {{detector}}"),
            Panel("Πακέτα που είδαν οι αισθητήρες / Packets the sensors saw",
                  "sum by (host) (rate(kastro_monitor_packets_total[5m]))", "pps", "{{host}}"),
            Panel("Χαμένα πακέτα λήψης / Capture drops",
                  "sum by (host) (rate(kastro_monitor_capture_drops_total[5m]))", "pps",
                  "{{host}}"),
        ),
    ),
    Board(
        "kastro-backup",
        "Αντίγραφα ασφαλείας / Backups",
        (
            Panel("Σύνολα εκτός RPO / Datasets past their RPO",
                  "count(time() - kastro_backup_last_success_timestamp_seconds"
                  " > kastro_backup_rpo_seconds) or vector(0)", kind="stat"),
            Panel("Αρχεία που έσβησαν πελάτες / Archives deleted by clients",
                  "sum(kastro_backup_repository_archives_vanished) or vector(0)", kind="stat"),
            Panel("Ηλικία τελευταίου αντιγράφου / Age of the last backup",
                  "time() - max by (host, dataset) (kastro_backup_last_success_timestamp_seconds)",
                  "s", "{{host}} {{dataset}}"),
            Panel("Διάρκεια άσκησης επαναφοράς (RTO) / Restore drill duration (RTO)",
                  "max by (host, dataset) (kastro_backup_drill_duration_seconds)", "s",
                  "{{host}} {{dataset}}"),
            Panel("Τελευταία άσκηση πέτυχε / Last drill passed",
                  "max by (host, dataset) (kastro_backup_drill_success)", "short",
                  "{{host}} {{dataset}}", kind="table"),
            Panel("Μέγεθος αποθετηρίων / Repository size",
                  "sum by (repository) (kastro_backup_repository_size_bytes)", "bytes",
                  "{{repository}}"),
        ),
    ),
)  # fmt: skip


def _panel(panel: Panel) -> Any:
    """One panel, half the width; the dashboard builder lays them out two to a row."""
    kinds: dict[str, Any] = {
        "timeseries": timeseries.Panel,
        "stat": stat.Panel,
        "table": table.Panel,
    }
    target = prometheus.Dataquery().expr(panel.expr).ref_id("A")
    if panel.legend:
        target = target.legend_format(panel.legend)
    return (
        kinds[panel.kind]()
        .title(panel.title)
        .datasource(DATASOURCE)
        .with_target(target)
        .unit(panel.unit)
        .height(8)
        .span(12)
    )


def build(board: Board) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model (a plain dict)."""
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .tags(["kastro"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").type("prometheus"))
    )
    if board.per_building:
        builder = builder.with_variable(
            dashboard.QueryVariable("building")
            .label("Κτίριο / Building")
            .datasource(DATASOURCE)
            .query("label_values(up, building)")
        )
    for panel in board.panels:
        builder = builder.with_panel(_panel(panel))
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON, for every board."""
    return {f"{board.uid}.json": build(board) for board in BOARDS}


def queries(building: str) -> list[tuple[str, str, str]]:
    """(dashboard, panel, PromQL) of every panel, the building variable set to `building`."""
    return [
        (board.uid, panel.title, panel.expr.replace(BUILDING, building))
        for board in BOARDS
        for panel in board.panels
    ]
