"""Every sensor's EVE events, shipped to the municipality's collector: rsyslog over TLS.

Alertmanager gets each alert (monitors/forward.py); the collector keeps every EVE line, for
search, incident reports and the regional SOC. A WAN cut must lose nothing, so each sensor runs
an rsyslog instance of its own (kastro-ship) that reads the EVE file (imfile, its read position
saved after every line) into a disk queue that survives restarts and waits for the collector
for as long as it takes. The collector runs one too (kastro-collector): TLS with client
certificates from the monitoring CA, admitting only the sensors' names, writing each sensor's
lines unchanged to /var/log/kastro/events/SENSOR/eve.json (SENSOR found from the connection's
address, never from a name inside the message: a sensor cannot write as another).

Both configurations are written here from the model (kastro_municipality.event_collector) and
checked by `rsyslogd -N1` before they are installed; every value spliced into them is checked
first (names, addresses, paths). Syslog over TLS: RFC 5425, port 6514.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kastro.inventory.plan import EVENTS_PORT, management_address, monitoring_addresses
from kastro.monitoring.topology import MonitoringModelError, checked_name

EVE_TAG = "kastro-eve"
SHIP_DIR = "/etc/kastro/ship"
COLLECTOR_DIR = "/etc/kastro/collector"
_PATH = re.compile(r"^/[A-Za-z0-9_./-]{1,200}$")


@dataclass(frozen=True)
class Paths:
    """Where each instance keeps its files (tests run both on loopback in a directory)."""

    work: str
    ca: str
    cert: str
    key: str
    events: str = "/var/log/kastro/events"
    sensors: str = ""  # the collector's table of sensor addresses -> names


SHIPPER_PATHS = Paths(
    work="/var/lib/kastro-ship",
    ca=f"{SHIP_DIR}/ca.crt",
    cert=f"{SHIP_DIR}/client.crt",
    key=f"{SHIP_DIR}/client.key",
)
COLLECTOR_PATHS = Paths(
    work="/var/lib/kastro-collector",
    ca=f"{COLLECTOR_DIR}/ca.crt",
    cert=f"{COLLECTOR_DIR}/server.crt",
    key=f"{COLLECTOR_DIR}/server.key",
    sensors=f"{COLLECTOR_DIR}/sensors.json",
)


def _path(kind: str, value: str) -> str:
    if not _PATH.fullmatch(value) or ".." in value:
        raise MonitoringModelError(f"{kind} {value!r} is not an absolute path without quotes")
    return value


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise MonitoringModelError(
            f"the event collector's address {text!r} is not an IP address; run 'kastro plan'"
        ) from None


def _collector(variables: Mapping[str, Any]) -> str:
    return str((variables.get("kastro_municipality") or {}).get("event_collector") or "")


def _sensors(variables: Mapping[str, Any]) -> list[str]:
    hosts = ((variables.get("kastro_plan") or {}).get("hosts")) or {}
    return sorted(checked_name("sensor", h) for h, e in hosts.items() if e.get("role") == "sensor")


def shipping(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What `host` ships and where: empty unless it is a sensor and a collector is named."""
    collector = _collector(variables)
    if not collector or host not in _sensors(variables):
        return {}
    log_dir = str(variables.get("monitor_log_dir") or "/var/log/kastro")
    reader = str(variables.get("monitor_user") or "kastro-monitor")
    return {
        "host": checked_name("host", host),
        # Every sensor gets its client certificate in one controller run (made once, kept).
        "clients": _sensors(variables),
        # The groups whose members may read the files (the monitor's EVE file).
        "groups": [checked_name("monitor_user", reader)],
        "collector": checked_name("event_collector", collector),
        "address": _address(management_address(variables.get("kastro_plan") or {}, collector)),
        "port": EVENTS_PORT,
        "files": [{"path": _path("monitor_log_dir", f"{log_dir}/eve.json"), "tag": EVE_TAG}],
    }


def collecting(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What the collector admits: empty unless `host` is the collector."""
    if _collector(variables) != host:
        return {}
    plan = variables.get("kastro_plan") or {}
    sensors = _sensors(variables)
    return {
        "host": checked_name("host", host),
        "address": _address(management_address(plan, host)),
        "port": EVENTS_PORT,
        "peers": sensors,
        # Where each sensor's connections come from: its file is chosen by the connection's
        # address, never by a name inside the message (a sensor cannot write as another).
        "sources": {a: s for s in sensors for a in monitoring_addresses(dict(plan), [s])},
    }


def sensor_table(collect: Mapping[str, Any]) -> str:
    """rsyslog's lookup table: a connection's source address -> the sensor's name."""
    rows = [
        {"index": _address(str(a)), "value": checked_name("sensor", str(s))}
        for a, s in sorted(collect["sources"].items())
    ]
    table = {"version": 1, "nomatch": "unknown", "type": "string", "table": rows}
    return json.dumps(table, indent=1) + "\n"


def _global(paths: Paths, local_name: str = "") -> list[str]:
    name = f' localHostname="{local_name}"' if local_name else ""
    return [
        f'global(workDirectory="{_path("work", paths.work)}" maxMessageSize="64k"{name}',
        f'       defaultNetstreamDriverCAFile="{_path("ca", paths.ca)}"',
        f'       defaultNetstreamDriverCertFile="{_path("cert", paths.cert)}"',
        f'       defaultNetstreamDriverKeyFile="{_path("key", paths.key)}")',
    ]


def shipper_config(ship: Mapping[str, Any], paths: Paths) -> str:
    """The sensor's rsyslog instance: each file line by line, through a disk queue, to the
    collector over TLS (the collector's certificate must name it; ours names this host)."""
    host = checked_name("host", str(ship["host"]))
    collector = checked_name("event_collector", str(ship["collector"]))
    target = _address(str(ship["address"]))
    lines = [
        "# Kastro: this sensor's events to the collector (generated; kastro.monitoring.events)",
        *_global(paths, host),
        'module(load="imfile" mode="inotify")',
        "",
        'ruleset(name="kastro_ship") {',
        f'  action(type="omfwd" target="{target}" port="{int(ship["port"])}" protocol="tcp"',
        '         tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"',
        '         streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name"',
        f'         streamDriverPermittedPeers="{collector}"',
        "         # On disk, synced: a WAN cut, a restart or a crash loses nothing.",
        '         queue.type="Disk" queue.fileName="events" queue.maxDiskSpace="1g"',
        '         queue.syncQueueFiles="on" queue.checkpointInterval="1" queue.saveOnShutdown="on"',
        '         action.resumeRetryCount="-1" action.resumeInterval="10")',
        "}",
        "",
    ]
    for item in ship["files"]:
        tag = checked_name("tag", str(item["tag"]))
        lines += [
            f'input(type="imfile" file="{_path("file", str(item["path"]))}" tag="{tag}"',
            '      ruleset="kastro_ship" reopenOnTruncate="on" freshStartTail="off"',
            '      persistStateInterval="1")',
        ]
    return "\n".join(lines) + "\n"


def collector_config(collect: Mapping[str, Any], paths: Paths) -> str:
    """The collector's rsyslog instance: TLS on its management address, only the sensors'
    certificates, each sensor's lines unchanged into its own file."""
    peers = [checked_name("sensor", str(p)) for p in collect["peers"]]
    if not peers:
        raise MonitoringModelError("the event collector has no sensors to admit")
    listen = _address(str(collect["address"]))
    events = _path("events", paths.events)
    allowed = ", ".join(f'"{p}"' for p in peers)
    return "\n".join(
        [
            "# Kastro: the sensors' events (generated; kastro.monitoring.events)",
            *_global(paths),
            f'lookup_table(name="kastro_sensors" file="{_path("sensors", paths.sensors)}"'
            ' reloadOnHUP="on")',
            'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"',
            '       streamDriver.authMode="x509/name" maxSessions="200"',
            f"       permittedPeer=[{allowed}])",
            'template(name="kastro_event_path" type="string"',
            f'         string="{events}/%$.sensor:::secpath-replace%/eve.json")',
            'template(name="kastro_event_line" type="string" string="%msg%\\n")',
            "",
            'ruleset(name="kastro_events") {',
            '  set $.sensor = lookup("kastro_sensors", $fromhost-ip);',
            '  action(type="omfile" dynaFile="kastro_event_path" template="kastro_event_line"',
            '         createDirs="on" dirCreateMode="0750" fileCreateMode="0640")',
            "}",
            f'input(type="imtcp" address="{listen}" port="{int(collect["port"])}"'
            ' ruleset="kastro_events")',
            "",
        ]
    )


def shipper_file(ship: Mapping[str, Any]) -> str:
    """The sensor's configuration with its installed paths (the event_shipping role)."""
    return shipper_config(ship, SHIPPER_PATHS)


def collector_table(collect: Mapping[str, Any]) -> str:
    """The collector's table of sensor addresses (the event_collector role)."""
    return sensor_table(collect)


def collector_file(collect: Mapping[str, Any]) -> str:
    """The collector's configuration with its installed paths (the event_collector role)."""
    return collector_config(collect, COLLECTOR_PATHS)
