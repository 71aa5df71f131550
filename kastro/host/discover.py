"""kastro-discover: which devices answer in this gateway's zones, compared with the asset
register (NIS2: an asset inventory that stays true).

The controller compiles the configuration (kastro.nis2.discovery): the zones of this
gateway's building with their IPv4 networks and interfaces, and the register's devices in
them (names with their planned address and/or MAC), this gateway's own addresses. Each run
sweeps every zone once with nmap's host discovery (`-sn`: ARP on the zone's own segment, no
port is touched), bounded in rate, retries and time, only on those networks; the networks and
interfaces are checked again here before they reach nmap's argv.

A device answering with an address and a MAC the register does not know is *unknown*; a
registered device that has not answered for `missing_after_hours` is *missing* (its clock
starts at the first run). The state (when each device last answered) is kept between runs.

Metrics (node_exporter textfile): kastro_discover_devices{zone, state="known|unknown"},
kastro_discover_unknown_device_info{zone, address, mac} (at most 50), kastro_discover_device_
last_seen_timestamp_seconds{device}, kastro_discover_device_missing{device},
kastro_discover_success, kastro_discover_last_run_timestamp_seconds.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
ZONE = re.compile(r"[a-z][a-z0-9-]{0,31}\.[a-z][a-z0-9-]{0,31}")
IFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
MAX_PREFIX_HOSTS = 4096  # a /20 at most per zone: the sweep stays bounded
MAX_UNKNOWN_LABELS = 50
NMAP_LIMITS = ("--max-retries", "1", "--host-timeout", "10s", "--max-rate", "200")


class ConfigError(ValueError):
    """The configuration cannot be used; nothing was scanned."""


@dataclass(frozen=True)
class Zone:
    name: str
    interface: str
    network: ipaddress.IPv4Network


@dataclass(frozen=True)
class Device:
    name: str
    address: str  # "" when only the MAC is registered
    mac: str


@dataclass
class Config:
    zones: list[Zone]
    devices: list[Device]
    own: set[str]
    missing_after_hours: int


@dataclass
class Seen:
    address: str
    mac: str


@dataclass
class Result:
    known: dict[str, int] = field(default_factory=dict)  # zone -> count
    unknown: list[tuple[str, Seen]] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # registered device names


def load_config(data: Any) -> Config:
    """The controller's configuration, checked field by field."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration is not a JSON object")
    zones = [_zone(z) for z in data.get("zones") or []]
    devices = [_device(d) for d in data.get("devices") or []]
    own = {str(ipaddress.IPv4Address(a)) for a in data.get("own") or []}
    hours = data.get("missing_after_hours", 168)
    if not isinstance(hours, int) or not 0 <= hours <= 24 * 365:
        raise ConfigError(f"missing_after_hours {hours!r}: hours, 0..8760")
    return Config(zones, devices, own, hours)


def _zone(raw: Any) -> Zone:
    name, iface, net = (
        raw.get(k) if isinstance(raw, dict) else None for k in ("zone", "interface", "network")
    )
    if not isinstance(name, str) or not ZONE.fullmatch(name):
        raise ConfigError(f"zone {name!r}: not a zone name (building.zone)")
    if not isinstance(iface, str) or not IFACE.fullmatch(iface):
        raise ConfigError(f"zone {name}: interface {iface!r} is not an interface name")
    try:
        network = ipaddress.IPv4Network(str(net), strict=True)
    except ValueError as error:
        raise ConfigError(f"zone {name}: network {net!r}: {error}") from error
    if not network.is_private or network.num_addresses > MAX_PREFIX_HOSTS:
        raise ConfigError(
            f"zone {name}: {network} must be a private network of at most "
            f"{MAX_PREFIX_HOSTS} addresses (only the municipality's own zones are swept)"
        )
    return Zone(name, iface, network)


def _device(raw: Any) -> Device:
    if not isinstance(raw, dict):
        raise ConfigError(f"device {raw!r}: not an object")
    name, address, mac = raw.get("name"), raw.get("address") or "", raw.get("mac") or ""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"device {name!r}: not a host name")
    if address:
        address = str(ipaddress.IPv4Address(address))
    if mac and not (isinstance(mac, str) and MAC.fullmatch(mac.lower())):
        raise ConfigError(f"device {name}: {mac!r} is not a MAC address")
    if not address and not mac:
        raise ConfigError(f"device {name}: neither an address nor a MAC to recognise it by")
    return Device(name, address, str(mac).lower())


def nmap_argv(zone: Zone) -> list[str]:
    return ["nmap", "-sn", "-n", "-oX", "-", "-e", zone.interface, *NMAP_LIMITS, str(zone.network)]


def parse_nmap(xml_text: str) -> list[Seen]:
    """The hosts nmap found up: their IPv4 address and MAC (none for this host's own)."""
    root = ET.fromstring(xml_text)  # noqa: S314 (nmap's own output, run by us)
    found = []
    for host in root.iter("host"):
        status = host.find("status")
        if status is None or status.get("state") != "up":
            continue
        address = mac = ""
        for item in host.iter("address"):
            if item.get("addrtype") == "ipv4":
                address = item.get("addr", "")
            elif item.get("addrtype") == "mac":
                mac = item.get("addr", "").lower()
        if address:
            found.append(Seen(address, mac))
    return found


def compare(config: Config, seen_by_zone: dict[str, list[Seen]]) -> Result:
    by_address = {d.address: d for d in config.devices if d.address}
    by_mac = {d.mac: d for d in config.devices if d.mac}
    result = Result()
    for zone, seen in sorted(seen_by_zone.items()):
        result.known[zone] = 0
        for item in seen:
            if item.address in config.own:
                continue
            device = by_mac.get(item.mac) or by_address.get(item.address)
            if device is None:
                result.unknown.append((zone, item))
            else:
                result.known[zone] += 1
                result.answered.add(device.name)
    return result


def update_state(
    state: dict[str, float], config: Config, result: Result, now: float
) -> dict[str, float]:
    """When each registered device last answered; a new device's clock starts now."""
    names = {d.name for d in config.devices}
    fresh = {name: when for name, when in state.items() if name in names}
    for name in names:
        if name in result.answered or name not in fresh:
            fresh[name] = now
    return fresh


def metrics_text(config: Config, result: Result | None, state: dict[str, float], now: float) -> str:
    lines = [
        "# HELP kastro_discover_success Whether every zone was swept.",
        "# TYPE kastro_discover_success gauge",
        f"kastro_discover_success {int(result is not None)}",
        "# HELP kastro_discover_last_run_timestamp_seconds When the zones were last swept.",
        "# TYPE kastro_discover_last_run_timestamp_seconds gauge",
        f"kastro_discover_last_run_timestamp_seconds {now:.0f}",
    ]
    if result is not None:
        unknown_by_zone: dict[str, int] = {}
        for zone, _ in result.unknown:
            unknown_by_zone[zone] = unknown_by_zone.get(zone, 0) + 1
        lines += [
            "# HELP kastro_discover_devices Devices that answered, by zone and register.",
            "# TYPE kastro_discover_devices gauge",
        ]
        for zone, count in sorted(result.known.items()):
            lines.append(f'kastro_discover_devices{{zone="{zone}",state="known"}} {count}')
            lines.append(
                f'kastro_discover_devices{{zone="{zone}",state="unknown"}} '
                f"{unknown_by_zone.get(zone, 0)}"
            )
        lines += [
            "# HELP kastro_discover_unknown_device_info A device the register lacks.",
            "# TYPE kastro_discover_unknown_device_info gauge",
        ]
        for zone, item in result.unknown[:MAX_UNKNOWN_LABELS]:
            lines.append(
                f'kastro_discover_unknown_device_info{{zone="{zone}",address="{item.address}",'
                f'mac="{item.mac}"}} 1'
            )
    limit = config.missing_after_hours * 3600
    lines += [
        "# HELP kastro_discover_device_last_seen_timestamp_seconds When a registered "
        "device last answered.",
        "# TYPE kastro_discover_device_last_seen_timestamp_seconds gauge",
    ]
    lines += [
        f'kastro_discover_device_last_seen_timestamp_seconds{{device="{n}"}} {t:.0f}'
        for n, t in sorted(state.items())
    ]
    lines += [
        "# HELP kastro_discover_device_missing A registered device silent for too long.",
        "# TYPE kastro_discover_device_missing gauge",
    ]
    lines += [
        f'kastro_discover_device_missing{{device="{n}"}} {int(now - t > limit)}'
        for n, t in sorted(state.items())
    ]
    return "\n".join(lines) + "\n"


def sweep(config: Config) -> dict[str, list[Seen]]:
    found = {}
    for zone in config.zones:
        done = subprocess.run(
            nmap_argv(zone), capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise OSError(f"nmap on {zone.name}: {done.stderr.strip()[:300]}")
        found[zone.name] = parse_nmap(done.stdout)
    return found


def _read_state(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from kastro.host.textfile import write_text

    parser = argparse.ArgumentParser(
        prog="kastro-discover", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=Path("/etc/kastro/discover.json"))
    parser.add_argument("--state", type=Path, default=Path("/var/lib/kastro-discover/state.json"))
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("/var/lib/prometheus/node-exporter/kastro_discover.prom"),
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(json.loads(args.config.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        print(f"kastro-discover: {args.config}: {error}")
        return 2
    now = time.time()
    state = _read_state(args.state)
    try:
        result: Result | None = compare(config, sweep(config))
    except (OSError, ET.ParseError, subprocess.TimeoutExpired) as error:
        print(f"kastro-discover: {error}")
        result = None
    if result is not None:
        state = update_state(state, config, result, now)
        write_text(args.state, json.dumps(state, sort_keys=True) + "\n")
        for zone, item in result.unknown:
            print(f"άγνωστη συσκευή / unknown device in {zone}: {item.address} {item.mac}")
    write_text(args.metrics, metrics_text(config, result, state, now))
    return 0 if result is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
