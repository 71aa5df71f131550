"""kastro-links: apply a gateway's inter-building links, and watch their health.

Installed by the links role as /usr/local/sbin/kastro-links. `apply` reads
/etc/kastro/links.json (written by the role from the plan) and makes the host match it:
addresses, one WireGuard tunnel per encrypted link, MTUs, HTB classes on every routed link and
the DSCP marking table. It runs at boot (kastro-links.service, before FRR) and when the role
finds the host differs from its configuration (`needs-apply`). Running it again changes nothing.

`collect` gathers the link health metrics into a file: ICMP probes to each link's far end
(latency, loss), interface byte counters (throughput), HTB class counters and FRR's OSPF
neighbour states; `exporter` serves that file for Prometheus without any privilege.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kastro.host import convention, textfile
from kastro.host.commands import run

CONFIG = Path("/etc/kastro/links.json")
WG_DIR = Path("/etc/kastro/links")  # <interface>.conf in `wg setconf` format, 0600
STATE = Path("/var/lib/kastro/links-applied.json")  # what the last apply set, to remove later
QOS_RULESET = Path("/etc/kastro/links-qos.nft")


class ConfigValueError(ValueError):
    """A value in links.json that is not what the role writes; nothing is applied."""


# Every value that reaches an ip, tc, wg, nft or ping command line is checked against one of
# these before anything runs, by the key it sits under (the commands are argument vectors as
# well, so a value can never become a second option or command).
_PATTERNS = {
    "interface": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"),
    "underlay": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"),
    "name": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"),
    "classid": re.compile(r"[0-9]{1,4}:[0-9]{1,4}"),
    "peer_endpoint": re.compile(r"[0-9a-fA-F.:\[\]]{3,60}:[0-9]{1,5}"),
    "parent": re.compile(r"[a-z][a-z0-9]{0,9}"),
    "mac": re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"),
}
# Ports and VLANs: a port name with room for '.4094' (kastro.inventory.ports.PORT_NAME).
_PORT_NAME = _PATTERNS["parent"]
_ADDRESS_KEYS = ("address", "ipv4", "ipv6", "peer_ipv4", "peer_ipv6", "router_id")
_NUMBER_KEYS = (
    "mtu",
    "routed_mtu",
    "rate_kbit",
    "ceil_kbit",
    "priority",
    "limit",
    "shaped_rate_kbit",
    "port",
    "cost",
    "capacity_mbps",
    "keepalive",
    "vlan",
)


def check_config(value: Any, path: str = "") -> None:
    """Raise ConfigValueError naming the first value that does not match its key's pattern."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            _check_value(str(key), item, where)
            check_config(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_config(item, f"{path}[{i}]")


def _check_value(key: str, item: Any, where: str) -> None:
    if key == "members" and isinstance(item, list):
        for i, member in enumerate(item):
            if not (isinstance(member, str) and _PORT_NAME.fullmatch(member)):
                raise ConfigValueError(f"{where}[{i}]: {member!r} is not a valid port name")
        return
    if isinstance(item, (dict, list)):
        return
    if key in _PATTERNS and not (isinstance(item, str) and _PATTERNS[key].fullmatch(item)):
        raise ConfigValueError(f"{where}: {item!r} is not a valid {key}")
    if key in _ADDRESS_KEYS:
        try:
            ipaddress.ip_interface(str(item))
        except ValueError as exc:
            raise ConfigValueError(f"{where}: {item!r} is not an address") from exc
    if key in _NUMBER_KEYS and not (isinstance(item, int) and not isinstance(item, bool)):
        raise ConfigValueError(f"{where}: {item!r} is not a whole number")


WIREGUARD_GO_SOCKETS = Path("/var/run/wireguard")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def ensure_wireguard(name: str) -> None:
    """The kernel module where there is one; wireguard-go (a unit per interface) otherwise."""
    if link_exists(name):
        return
    if run("ip", "link", "add", name, "type", "wireguard", check=False).returncode == 0:
        return
    run("systemctl", "start", f"kastro-wireguard-go@{name}.service")
    # wireguard-go makes the interface first and its control socket a moment later; `wg`
    # before the socket exists fails ("Protocol not supported": it tries the kernel instead).
    socket = WIREGUARD_GO_SOCKETS / f"{name}.sock"
    for _ in range(100):
        if link_exists(name) and socket.exists():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name}: wireguard-go did not create the interface and {socket}")


def addresses_of(iface: str) -> set[str]:
    out = run("ip", "-j", "addr", "show", "dev", iface, check=False).stdout or "[]"
    found = set()
    for entry in json.loads(out):
        for addr in entry.get("addr_info", []):
            found.add(f"{addr['local']}/{addr['prefixlen']}")
    return found


def tc(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`tc` with its arguments written as on the command line. Safe to split: check_config
    has made sure no value in the configuration holds a blank or anything but its pattern."""
    return run("tc", *command.split(), check=check)


def apply_tc(link: dict[str, Any]) -> None:
    """HTB on the routed interface: one class per traffic kind, each with its own queue."""
    dev = link["interface"]
    if not link["qos"]:
        tc(f"qdisc del dev {dev} root", check=False)
        return
    default = next(c["classid"] for c in link["qos"] if c["name"] == "default").split(":")[1]
    rate = link["shaped_rate_kbit"]
    # HTB cannot change its root qdisc in place: keep a matching one, rebuild anything else.
    roots = [q for q in json.loads(tc(f"-j qdisc show dev {dev}").stdout or "[]") if q.get("root")]
    current = roots[0] if roots else {}
    if not (
        current.get("kind") == "htb"
        and current.get("handle") == "1:"
        and int(str(current.get("options", {}).get("default", "-1")), 0) == int(default, 16)
    ):
        tc(f"qdisc del dev {dev} root", check=False)
        tc(f"qdisc add dev {dev} root handle 1: htb default {default}")
    tc(f"class replace dev {dev} parent 1: classid 1:1 htb rate {rate}kbit ceil {rate}kbit")
    for cls in link["qos"]:
        # quantum: how many bytes a class sends per round; one full frame at least.
        quantum = max(1514, min(60000, cls["rate_kbit"] * 125 // 10))
        tc(
            f"class replace dev {dev} parent 1:1 classid {cls['classid']} htb "
            f"rate {cls['rate_kbit']}kbit ceil {cls['ceil_kbit']}kbit "
            f"prio {cls['priority']} quantum {quantum}"
        )
        minor = cls["classid"].split(":")[1]
        tc(
            f"qdisc replace dev {dev} parent {cls['classid']} handle {minor}: "
            f"pfifo limit {cls['limit']}"
        )
    # Filters have no "replace" that is safe for u32; rebuild them (a few ms, default class).
    tc(f"filter del dev {dev} parent 1:", check=False)
    for cls in link["qos"]:
        for dscp in cls["dscp"]:
            tos = f"0x{dscp << 2:02x}"  # DSCP is the upper six bits of the TOS / traffic class
            for protocol, prio, field in (("ip", 1, "ip dsfield"), ("ipv6", 2, "ip6 priority")):
                tc(
                    f"filter add dev {dev} parent 1: protocol {protocol} prio {prio} "
                    f"u32 match {field} {tos} 0xfc flowid {cls['classid']}"
                )


def config_digest(config_path: Path) -> str:
    """What the host should look like: the configuration and the tunnels' settings."""
    digest = hashlib.sha256(config_path.read_bytes())
    for path in sorted(WG_DIR.glob("*.conf")) if WG_DIR.exists() else []:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def needs_apply(config: dict[str, Any], config_path: Path) -> list[str]:
    """Why the host does not match its configuration (empty: it does).

    The role asks this instead of relying on a handler, so a run that failed half-way is
    finished by the next run even though the files on the host no longer change.
    """
    reasons = []
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    if state.get("digest") != config_digest(config_path):
        reasons.append("the configuration changed since the last apply")
    ports = config.get("ports") or {"names": [], "bonds": [], "vlans": []}
    reasons += missing_ports(ports)
    for name in netdev_names(ports):
        if not link_exists(name):
            reasons.append(f"{name} is missing")
    for link in config["links"]:
        if not link_exists(link["interface"]):
            reasons.append(f"{link['interface']} is missing")
        elif link["qos"] and '"kind":"htb"' not in tc(
            f"-j qdisc show dev {link['interface']} root", check=False
        ).stdout.replace(" ", ""):
            reasons.append(f"{link['interface']} has no HTB classes")
    if run("nft", "list", "table", "inet", "kastro_qos", check=False).returncode != 0:
        reasons.append("table inet kastro_qos is not loaded")
    return reasons


def master_of(name: str) -> str:
    """The bond a port is enslaved to ('' if none)."""
    master = Path("/sys/class/net", name, "master")
    return master.resolve().name if master.exists() else ""


def named_by_mac(mac: str) -> str:
    """The interface whose address is `mac` ('' if none)."""
    for path in sorted(Path("/sys/class/net").iterdir()):
        try:
            if (path / "address").read_text().strip().lower() == mac:
                return path.name
        except OSError:
            continue
    return ""


def missing_ports(ports: dict[str, Any]) -> list[str]:
    """Why a port the model names is not there (empty: every one is): before anything
    changes, so a wrong MAC or a gateway not yet rebooted leaves the host as it was."""
    bonds = {b["name"] for b in ports["bonds"]}
    wanted = {p["name"]: p.get("mac", "") for p in ports["names"]}
    for bond in ports["bonds"]:
        wanted.update({m: wanted.get(m, "") for m in bond["members"]})
    for vlan in ports["vlans"]:
        if vlan["parent"] not in bonds:
            wanted.setdefault(vlan["parent"], "")
    problems = []
    for name, mac in sorted(wanted.items()):
        if link_exists(name):
            continue
        now = named_by_mac(mac) if mac else ""
        if now:
            problems.append(
                f"port {name} (MAC {mac}) is still called {now}: its .link file names it at "
                "boot; reboot the gateway (or free the port and run 'udevadm trigger')"
            )
        else:
            problems.append(
                f"port {name} is missing" + (f": no interface has MAC {mac}" if mac else "")
                + "; check kastro_ports against 'ip link' on the gateway"
            )  # fmt: skip
    return problems


def _apply_ports(ports: dict[str, Any], previous: list[str]) -> list[str]:
    """Bonds (active-backup: works with any switch) of their member ports, then the VLANs on
    the ports; the bonds and VLANs of the previous apply that are no longer wanted removed."""
    problems = missing_ports(ports)
    if problems:
        raise RuntimeError("; ".join(problems) + "; nothing was changed")
    changes = []
    for bond in ports["bonds"]:
        name = bond["name"]
        if not link_exists(name):
            run("ip", "link", "add", name, "type", "bond", "mode", "active-backup", "miimon", "100")
            changes.append(f"created bond {name}")
        for member in bond["members"]:
            if master_of(member) != name:
                run("ip", "link", "set", member, "down")  # the kernel enslaves only a port down
                run("ip", "link", "set", member, "master", name)
                changes.append(f"{member} into {name}")
        run("ip", "link", "set", name, "up")
    for vlan in ports["vlans"]:
        name = vlan["name"]
        if not link_exists(name):
            run("ip", "link", "set", vlan["parent"], "up")
            run("ip", "link", "add", "link", vlan["parent"], "name", name, "type", "vlan",
                "id", str(vlan["vlan"]))  # fmt: skip
            changes.append(f"created {name}")
        run("ip", "link", "set", name, "up")
    wanted = netdev_names(ports)
    for name in reversed(previous):  # VLANs before the bonds they ride on
        if name not in wanted and link_exists(name):
            run("ip", "link", "del", name, check=False)
            changes.append(f"removed {name}")
    return changes


def netdev_names(ports: dict[str, Any]) -> list[str]:
    """The interfaces kastro-links creates for the ports, bonds first."""
    return [b["name"] for b in ports["bonds"]] + [v["name"] for v in ports["vlans"]]


def _apply_tunnels(links: list[dict[str, Any]], tunnels: list[dict[str, Any]]) -> list[str]:
    """Underlays up at their MTU, each tunnel created and given its WireGuard settings."""
    changes = []
    for link in links:
        if not link.get("internet"):  # the uplink's MTU is the ISP's, not the link's
            run("ip", "link", "set", link["underlay"], "mtu", str(link["mtu"]), "up")
    for link in tunnels:
        name = link["interface"]
        if not link_exists(name):
            changes.append(f"created {name}")
        ensure_wireguard(name)
        # syncconf changes only what differs: an unchanged peer keeps its session.
        run("wg", "syncconf", name, str(WG_DIR / f"{name}.conf"))
        run("ip", "link", "set", name, "mtu", str(link["routed_mtu"]), "multicast", "on", "up")
    return changes


def apply(config: dict[str, Any], config_path: Path = CONFIG) -> list[str]:
    """Make the host match the configuration; returns what changed (for the log)."""
    changes: list[str] = []
    previous = json.loads(STATE.read_text()) if STATE.exists() else {"addresses": [], "tunnels": []}

    ports = config.get("ports") or {"names": [], "bonds": [], "vlans": []}
    changes += _apply_ports(ports, previous.get("netdevs", []))
    tunnels = [link for link in config["links"] if link.get("wireguard")]
    changes += _apply_tunnels(config["links"], tunnels)

    wanted = {(a["interface"], a["address"]) for a in config["addresses"]}
    for iface, address in sorted(wanted):
        if address not in addresses_of(iface):
            extra = ["nodad"] if ":" in address else []
            run("ip", "addr", "replace", address, "dev", iface, *extra)
            changes.append(f"{iface} {address}")
    for iface, address in previous.get("addresses", []):
        if (iface, address) not in wanted and link_exists(iface):
            run("ip", "addr", "del", address, "dev", iface, check=False)
            changes.append(f"removed {iface} {address}")
    for name in previous.get("tunnels", []):
        if name not in {link["interface"] for link in tunnels} and link_exists(name):
            run("ip", "link", "del", name, check=False)
            run("systemctl", "stop", f"kastro-wireguard-go@{name}.service", check=False)
            changes.append(f"removed {name}")

    for link in config["links"]:
        apply_tc(link)
    QOS_RULESET.write_text(config["qos_ruleset"], encoding="utf-8")
    run("nft", "-f", str(QOS_RULESET))

    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(
        json.dumps(
            {
                "addresses": sorted(wanted),
                "tunnels": [t["interface"] for t in tunnels],
                "netdevs": netdev_names(ports),
                "digest": config_digest(config_path),
            }
        ),
        encoding="utf-8",
    )
    return changes


# --- health -----------------------------------------------------------------------------------

PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
PING_RTT = re.compile(r"= [\d.]+/([\d.]+)/")


class Prober(threading.Thread):
    """Pings one link's far end every `interval` seconds, a few packets at a time."""

    def __init__(self, link: dict[str, Any], interval: float, count: int) -> None:
        super().__init__(daemon=True, name=f"probe-{link['name']}")
        self.link, self.interval, self.count = link, interval, count
        self.sent = self.received = 0
        self.rtt_seconds = float("nan")
        self.last_loss = float("nan")

    def run(self) -> None:
        while True:
            link = self.link
            proc = run(
                *f"ping -n -q -c {self.count} -i 0.2 -W 1 -I {link['interface']}".split(),
                link["peer_ipv4"],
                check=False,
            )
            result = parse_ping(proc.stdout)
            if result:
                sent, received, self.rtt_seconds = result
                self.sent += sent
                self.received += received
                self.last_loss = (sent - received) / sent if sent else float("nan")
            time.sleep(self.interval)


def parse_ping(text: str) -> tuple[int, int, float] | None:
    """`ping -q` output -> (sent, received, mean round trip in seconds, NaN without replies);
    None when ping printed no summary (it could not send at all)."""
    summary = PING_SUMMARY.search(text)
    if not summary:
        return None
    rtt = PING_RTT.search(text)
    seconds = float(rtt.group(1)) / 1000 if rtt else float("nan")
    return int(summary.group(1)), int(summary.group(2)), seconds


def ospf_neighbors(family: str = "ipv4") -> list[dict[str, Any]] | None:
    """FRR's OSPF (ipv4) or OSPFv3 (ipv6) neighbours: router id, interface, state."""
    if not shutil.which("vtysh"):
        return None
    command = "show ip ospf neighbor json" if family == "ipv4" else "show ipv6 ospf6 neighbor json"
    proc = run("vtysh", "-c", command, check=False)
    return parse_ospf_neighbors(proc.stdout) if proc.returncode == 0 else None


def parse_ospf_neighbors(text: str) -> list[dict[str, Any]] | None:
    """vtysh's JSON for `show ip ospf neighbor` (ospfd) or `show ipv6 ospf6 neighbor`
    (ospf6d) -> rows of router id, interface, state; None for anything else."""
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError:
        return None  # the daemon is not running: vtysh prints a message instead
    if not isinstance(data, dict):
        return None
    rows = []
    neighbors = data.get("neighbors") or {}
    if isinstance(neighbors, dict):  # ospfd: {router id: [entries]}
        for router_id, entries in neighbors.items():
            for entry in entries:
                rows.append(
                    {
                        "router_id": router_id,
                        "interface": str(entry.get("ifaceName", "")).split(":")[0],
                        "state": str(entry.get("nbrState", "")).split("/")[0],
                    }
                )
    else:  # ospf6d: [entries]
        for entry in neighbors:
            rows.append(
                {
                    "router_id": str(entry.get("neighborId", "")),
                    "interface": str(entry.get("interfaceName", "")),
                    "state": str(entry.get("state", "")),
                }
            )
    return rows


TC_CLASS = re.compile(
    r"^class htb (?P<handle>\S+) .*?\n\s*Sent (?P<bytes>\d+) bytes (?P<packets>\d+) pkt "
    r"\(dropped (?P<drops>\d+)",
    re.MULTILINE,
)


def tc_classes(dev: str) -> list[dict[str, Any]]:
    """HTB class counters (this iproute2 has no JSON output for HTB classes)."""
    return parse_tc_classes(run("tc", "-s", "class", "show", "dev", dev, check=False).stdout)


def parse_tc_classes(out: str) -> list[dict[str, Any]]:
    """`tc -s class show` output -> each HTB class's handle, bytes, packets and drops."""
    return [
        {
            "handle": m["handle"],
            "bytes": int(m["bytes"]),
            "packets": int(m["packets"]),
            "drops": int(m["drops"]),
        }
        for m in TC_CLASS.finditer(out)
    ]


class LinksCollector:
    """Link health at collect time: the probers' last results, interface and HTB counters,
    FRR's adjacencies. A module-level collector; `collect` registers it on its own registry."""

    LABELS = ("link", "peer", "interface")

    def __init__(self, config: dict[str, Any], probers: list[Prober]) -> None:
        self.config = config
        self.probers = probers
        self.families = ["ipv4"] + (["ipv6"] if config.get("ospf6") else [])

    def collect(self) -> Iterator[Any]:
        yield from self.link_metrics()
        yield from self.ospf_metrics()

    def link_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = list(self.LABELS)
        up = GaugeMetricFamily(
            "kastro_link_up", "1 if the last probe got an answer from the far end", labels=labels
        )
        rtt = GaugeMetricFamily(
            "kastro_link_rtt_seconds", "Mean round-trip time of the last probe", labels=labels
        )
        loss = GaugeMetricFamily(
            "kastro_link_probe_loss_ratio", "Share of the last probe's pings lost", labels=labels
        )
        sent = CounterMetricFamily("kastro_link_probes_sent", "Probe pings sent", labels=labels)
        lost = CounterMetricFamily(
            "kastro_link_probes_lost", "Probe pings unanswered", labels=labels
        )
        tx = CounterMetricFamily(
            "kastro_link_transmit_bytes", "Bytes sent over the link", labels=labels
        )
        rx = CounterMetricFamily(
            "kastro_link_receive_bytes", "Bytes received over the link", labels=labels
        )
        cap = GaugeMetricFamily(
            "kastro_link_capacity_bytes_per_second",
            "The link's capacity from the inventory",
            labels=labels,
        )
        shaped = GaugeMetricFamily(
            "kastro_link_shaped_bytes_per_second", "The rate HTB shapes the link to", labels=labels
        )
        cls_bytes = CounterMetricFamily(
            "kastro_link_qos_sent_bytes", "Bytes sent per QoS class", labels=[*labels, "class"]
        )
        cls_drops = CounterMetricFamily(
            "kastro_link_qos_dropped_packets",
            "Packets dropped per QoS class",
            labels=[*labels, "class"],
        )
        for prober in self.probers:
            link = prober.link
            values = [link["name"], link["peer_building"], link["interface"]]
            up.add_metric(
                values,
                1.0 if prober.last_loss == prober.last_loss and prober.last_loss < 1 else 0.0,
            )
            rtt.add_metric(values, prober.rtt_seconds)
            loss.add_metric(values, prober.last_loss)
            sent.add_metric(values, prober.sent)
            lost.add_metric(values, prober.sent - prober.received)
            stats = Path("/sys/class/net", link["interface"], "statistics")
            if stats.exists():
                tx.add_metric(values, int((stats / "tx_bytes").read_text()))
                rx.add_metric(values, int((stats / "rx_bytes").read_text()))
            cap.add_metric(values, link["capacity_mbps"] * 125_000)
            shaped.add_metric(values, link["shaped_rate_kbit"] * 125)
            names = {c["classid"]: c["name"] for c in link["qos"]}
            for row in tc_classes(link["interface"]):
                name = names.get(str(row.get("handle")))
                if name:
                    cls_bytes.add_metric([*values, name], row["bytes"])
                    cls_drops.add_metric([*values, name], row["drops"])
        yield from (up, rtt, loss, sent, lost, tx, rx, cap, shaped, cls_bytes, cls_drops)

    def ospf_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        ospf_up = GaugeMetricFamily(
            "kastro_ospf_up", "1 if FRR's OSPF daemon answered", labels=["family"]
        )
        full = GaugeMetricFamily(
            "kastro_ospf_neighbor_full",
            "1 if the OSPF adjacency over the link is Full (expected: one per link)",
            labels=[*self.LABELS, "family"],
        )
        for family in self.families:
            neighbors = ospf_neighbors(family)
            ospf_up.add_metric([family], 0.0 if neighbors is None else 1.0)
            by_iface = {n["interface"]: n for n in neighbors or []}
            for link in self.config["links"]:
                n = by_iface.get(link["interface"])
                full.add_metric(
                    [link["name"], link["peer_building"], link["interface"], family],
                    1.0 if n and n["state"] == "Full" else 0.0,
                )
        yield ospf_up
        yield full


def collect(config: dict[str, Any], output: Path, interval: float, count: int) -> None:
    """Probe every link continuously and write the metrics to `output` every `interval` s."""
    probers = [Prober(link, interval, count) for link in config["links"]]
    for prober in probers:
        prober.start()
    textfile.publish(LinksCollector(config, probers), output, interval, METRICS_PREFIX)


METRICS_PREFIX = "kastro_links"
METRICS_FILE = "/run/kastro-links-metrics/links.prom"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kastro-links", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("apply", help="make the host match the configuration")
    sub.add_parser(
        "needs-apply", help="whether the host differs from its configuration, as JSON (and why)"
    )
    p = textfile.add_collect_command(sub, METRICS_FILE, 5.0, "the link probes", once=False)
    p.add_argument("--count", type=int, default=5, help="pings per probe")
    textfile.add_exporter_command(sub, "127.0.0.1:9554", METRICS_FILE)
    p = sub.add_parser("neighbors", help="print FRR's OSPF neighbours as JSON")
    p.add_argument("--family", choices=["ipv4", "ipv6"], default="ipv4")
    args = parser.parse_args(argv)
    if args.command == "neighbors":
        print(json.dumps(ospf_neighbors(args.family)))
        return 0
    if args.command == "exporter":  # needs no configuration: it only serves the file
        textfile.serve(args.textfile, args.listen)
        return 0
    try:
        config = json.loads(args.config.read_text(encoding="utf-8"))
        check_config(config)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"kastro-links: cannot read {args.config}: {exc}", file=sys.stderr)
        return 2
    except ConfigValueError as exc:
        print(f"kastro-links: {args.config}: {exc}; nothing was changed", file=sys.stderr)
        return 2
    if args.command == "needs-apply":
        print(convention.needs_apply_json(needs_apply(config, args.config)))
        return 0
    if args.command == "apply":
        try:
            changes = apply(config, args.config)
        except RuntimeError as exc:
            print(f"kastro-links: {exc}", file=sys.stderr)
            return 1
        print("kastro-links: " + ("; ".join(changes) if changes else "nothing to change"))
        return 0
    collect(config, args.output, args.interval, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
