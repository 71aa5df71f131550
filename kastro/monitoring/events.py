"""Every managed host's security logs and events, shipped to the municipality's collector:
rsyslog over TLS.

Alertmanager gets each alert (monitors/forward.py); the collector keeps every line, for search,
incident reports (NIS2) and the regional SOC: a sensor's EVE events, every host's ClamAV
findings (EVE), its logins and privilege use (the journal's auth and authpriv facilities) and
its kernel audit records (the journal's audit transport: auditd's rules, read without
touching auditd's own files). A WAN cut must lose nothing, so each host runs an rsyslog
instance of its own (kastro-ship) that reads the files (imfile) and the journal (imjournal),
their read positions saved after every line, into a disk queue that survives restarts and
waits for the collector for as long as it takes. The collector runs one too
(kastro-collector): TLS with client certificates from the monitoring CA, admitting only the
managed hosts' names, writing each host's lines to /var/log/kastro/events/HOST/ (eve.json
unchanged, auth.log, audit.log). HOST is found from the connection's address, never from a name
inside the message: a host cannot write as another.

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

from kastro.inventory.plan import (
    EVENTS_PORT,
    host_addresses,
    management_address,
)
from kastro.monitoring.topology import MonitoringModelError, checked_name

EVE_TAG = "kastro-eve"
AUTH_TAG = "kastro-auth"
AUDIT_TAG = "kastro-audit"
# What the collector makes of each tag: the file in the host's directory, and whether a line
# keeps its own text (EVE's JSON and audit records carry their time) or gets the time it was
# logged in front (a journal line is "sshd[412]: Accepted publickey for ...").
COLLECTED = {
    EVE_TAG: ("eve.json", False),
    AUTH_TAG: ("auth.log", True),
    AUDIT_TAG: ("audit.log", False),
}
CLAMAV_EVE = "/var/log/kastro-clamav/eve.json"  # kastro-clamav-scan.service (the endpoint role)
# The groups the shipper reads through: adm (ClamAV's EVE log), systemd-journal (the journal).
READ_GROUPS = ("adm", "systemd-journal")
SURICATA_GROUP = "suricata"
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
    hosts: str = ""  # the collector's table: a connection's source address -> the host


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
    hosts=f"{COLLECTOR_DIR}/hosts.json",
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
            f"the event collector's address {text!r} is not an IP address; run 'kastro apply'"
        ) from None


def _collector(variables: Mapping[str, Any]) -> str:
    return str((variables.get("kastro_municipality") or {}).get("event_collector") or "")


def _shippers(variables: Mapping[str, Any]) -> list[str]:
    """Every host of the plan: site.yml gives each the base and endpoint roles."""
    hosts = ((variables.get("kastro_plan") or {}).get("hosts")) or {}
    return sorted(checked_name("host", h) for h in hosts)


def _role(variables: Mapping[str, Any], host: str) -> str:
    hosts = ((variables.get("kastro_plan") or {}).get("hosts")) or {}
    return str((hosts.get(host) or {}).get("role") or "")


def shipping(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What `host` ships and where: empty unless a collector is named and Kastro manages the
    host. Every host: its ClamAV findings, its logins and privilege use, its audit records; a
    sensor: its monitor's and Suricata's EVE events too."""
    collector = _collector(variables)
    shippers = _shippers(variables)
    if not collector or host not in shippers:
        return {}
    files = [{"path": CLAMAV_EVE, "tag": EVE_TAG}]
    groups = list(READ_GROUPS)
    if _role(variables, host) == "sensor":
        log_dir = str(variables.get("monitor_log_dir") or "/var/log/kastro")
        reader = str(variables.get("monitor_user") or "kastro-monitor")
        files.insert(0, {"path": _path("monitor_log_dir", f"{log_dir}/eve.json"), "tag": EVE_TAG})
        groups.append(checked_name("monitor_user", reader))  # the monitor's EVE file
        suricata = str(variables.get("suricata_log_dir") or "/var/log/suricata")
        files.insert(1, {"path": _path("suricata_log_dir", f"{suricata}/eve.json"), "tag": EVE_TAG})
        groups.append(SURICATA_GROUP)  # Suricata's EVE file (role suricata, before this one)
    return {
        "host": checked_name("host", host),
        # Every managed host gets its client certificate in one controller run (made once, kept).
        "clients": shippers,
        # The groups whose members may read the files and the journal.
        "groups": groups,
        "collector": checked_name("event_collector", collector),
        "address": _address(management_address(variables.get("kastro_plan") or {}, collector)),
        "port": EVENTS_PORT,
        "files": files,
        "journal": True,
    }


def collecting(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What the collector admits: empty unless `host` is the collector."""
    if _collector(variables) != host:
        return {}
    plan = variables.get("kastro_plan") or {}
    shippers = _shippers(variables)
    return {
        "host": checked_name("host", host),
        "address": _address(management_address(plan, host)),
        "port": EVENTS_PORT,
        "peers": shippers,
        # Where each host's connections come from (a gateway's from any of its addresses): its
        # files are chosen by the connection's address, never by a name inside the message (a
        # host cannot write as another).
        "sources": {a: h for h in shippers for a in host_addresses(plan, h)},
    }


def host_table(collect: Mapping[str, Any]) -> str:
    """rsyslog's lookup table: a connection's source address -> the host's name."""
    rows = [
        {"index": _address(str(a)), "value": checked_name("host", str(s))}
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


# What the shipper sends: RFC 5424 with the collector's tag as APP-NAME and the line as MSG.
_FORWARD = (
    'template(name="kastro_forward" type="string"\n'
    '         string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %$.tag% - - - %$.line%\\n")'
)


def _forward(ship: Mapping[str, Any]) -> list[str]:
    """The one action every line goes through: TLS to the collector, through a disk queue."""
    collector = checked_name("event_collector", str(ship["collector"]))
    target = _address(str(ship["address"]))
    return [
        'ruleset(name="kastro_forward") {',
        f'  action(type="omfwd" target="{target}" port="{int(ship["port"])}" protocol="tcp"',
        '         tcp_framing="octet-counted" template="kastro_forward"',
        '         streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name"',
        f'         streamDriverPermittedPeers="{collector}"',
        "         # On disk, synced: a WAN cut, a restart or a crash loses nothing.",
        '         queue.type="Disk" queue.fileName="events" queue.maxDiskSpace="1g"',
        '         queue.syncQueueFiles="on" queue.checkpointInterval="1" queue.saveOnShutdown="on"',
        '         action.resumeRetryCount="-1" action.resumeInterval="10")',
        "}",
    ]


def _journal() -> list[str]:
    """Logins and privilege use (auth, authpriv) and the kernel's audit records from the
    journal (its read position kept in the work directory: a restart resends nothing twice and
    skips nothing). imjournal's messages take the default ruleset: the statements below.

    Any local user can log with the authpriv facility under any name (`logger -t sshd`), so
    an auth line ends with what the journal itself recorded of its sender, which the sender
    cannot choose: the user id (_UID, from the socket's credentials, always there) and the
    executable (_EXE, read from /proc when the record arrives: "?" when the sender had already
    exited, or where journald may not read it, as in a podman container). Not the process
    name (_COMM): a process renames itself at will (PR_SET_NAME). The audit transport is the
    kernel's alone."""
    return [
        'module(load="imjournal" StateFile="journal.state" IgnorePreviousMessages="off"',
        '       Ratelimit.Interval="0")',
        'if $!_TRANSPORT == "audit" then {',
        f'  set $.tag = "{AUDIT_TAG}";',
        "  set $.line = $msg;",
        "  call kastro_forward",
        '} else if $syslogfacility-text == "auth" or $syslogfacility-text == "authpriv" then {',
        f'  set $.tag = "{AUTH_TAG}";',
        "  set $.exe = $!_EXE;",
        '  if $.exe == "" then { set $.exe = "?"; }',
        '  set $.line = $syslogtag & " " & ltrim($msg) & " (exe=" & $.exe & " uid=" & $!_UID',
        '              & ")";',
        "  call kastro_forward",
        "}",
    ]


def shipper_config(ship: Mapping[str, Any], paths: Paths) -> str:
    """The host's rsyslog instance: each file line by line and (with "journal") the journal's
    security records, through a disk queue, to the collector over TLS (the collector's
    certificate must name it; ours names this host)."""
    host = checked_name("host", str(ship["host"]))
    lines = [
        "# Kastro: this host's logs and events to the collector"
        " (generated; kastro.monitoring.events)",
        *_global(paths, host),
        'module(load="imfile" mode="inotify")',
        _FORWARD,
        "",
        *_forward(ship),
        "",
        'ruleset(name="kastro_files") {',
        "  set $.tag = $programname;",
        "  set $.line = $msg;",
        "  call kastro_forward",
        "}",
    ]
    for item in ship["files"]:
        tag = checked_name("tag", str(item["tag"]))
        if tag not in COLLECTED:
            raise MonitoringModelError(f"the collector keeps no file for the tag {tag!r}")
        lines += [
            f'input(type="imfile" file="{_path("file", str(item["path"]))}" tag="{tag}"',
            '      ruleset="kastro_files" reopenOnTruncate="on" freshStartTail="off"',
            '      persistStateInterval="1")',
        ]
    if ship.get("journal"):
        lines += ["", *_journal()]
    return "\n".join(lines) + "\n"


def collector_config(collect: Mapping[str, Any], paths: Paths) -> str:
    """The collector's rsyslog instance: TLS on its management address, only the managed
    hosts' certificates, each host's lines into its own directory, one file per tag (any
    other tag is dropped)."""
    peers = [checked_name("host", str(p)) for p in collect["peers"]]
    if not peers:
        raise MonitoringModelError("the event collector has no hosts to admit")
    listen = _address(str(collect["address"]))
    events = _path("events", paths.events)
    allowed = ", ".join(f'"{p}"' for p in peers)
    routes: list[str] = []
    for tag, (name, timed) in COLLECTED.items():
        word = "if" if not routes else "} else if"
        template = "kastro_event_timed" if timed else "kastro_event_line"
        routes += [
            f'  {word} $programname == "{tag}" then {{',
            f'    set $.file = "{name}";',
            '    action(type="omfile" dynaFile="kastro_event_path"'
            f' template="{template}" createDirs="on"',
            '           dirCreateMode="0700" fileCreateMode="0600")',
        ]
    return "\n".join(
        [
            "# Kastro: the managed hosts' logs and events (generated; kastro.monitoring.events)",
            *_global(paths),
            "# A line break inside a message is written as #012: one message, one line, never a",
            "# forged second line (rsyslog's default, stated here as this file relies on it).",
            'global(parser.escapeControlCharactersOnReceive="on")',
            f'lookup_table(name="kastro_hosts" file="{_path("hosts", paths.hosts)}"'
            ' reloadOnHUP="on")',
            'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"',
            '       streamDriver.authMode="x509/name" maxSessions="200"',
            f"       permittedPeer=[{allowed}])",
            'template(name="kastro_event_path" type="string"',
            f'         string="{events}/%$.host:::secpath-replace%/%$.file%")',
            'template(name="kastro_event_line" type="string" string="%msg%\\n")',
            'template(name="kastro_event_timed" type="string"',
            '         string="%timereported:::date-rfc3339% %msg%\\n")',
            "",
            'ruleset(name="kastro_events") {',
            '  set $.host = lookup("kastro_hosts", $fromhost-ip);',
            *routes,
            "  }",
            "}",
            f'input(type="imtcp" address="{listen}" port="{int(collect["port"])}"'
            ' ruleset="kastro_events")',
            "",
        ]
    )


def shipper_file(ship: Mapping[str, Any]) -> str:
    """A host's shipper configuration with its installed paths (the event_shipping role)."""
    return shipper_config(ship, SHIPPER_PATHS)


def collector_table(collect: Mapping[str, Any]) -> str:
    """The collector's table of the hosts' addresses (the event_collector role)."""
    return host_table(collect)


def collector_file(collect: Mapping[str, Any]) -> str:
    """The collector's configuration with its installed paths (the event_collector role)."""
    return collector_config(collect, COLLECTOR_PATHS)
