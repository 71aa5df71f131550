"""The lab's L2 fabric: one bridge per network inside a private network namespace.

The bridges live in their own namespace (``<lab>-sw``) so nothing of the lab appears in
this machine's own network stack. Each host joins a network through a veth pair: one end
is a port of the bridge, the other is moved into the container and renamed
(``z-staff``, ``l-kep``, ``wan``...). Capture points mirror every port's traffic to a
sensor's interface with tc (clsact + u32 + mirred).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

from kastro.lab.topology import Topology


class SwitchError(RuntimeError):
    """A network operation of the lab failed; the message names the command."""


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SwitchError(f"'{' '.join(argv)}' failed: {proc.stderr.strip()}")
    return proc


def namespace(lab: str) -> str:
    return f"{lab}-sw"


def bridge_names(topo: Topology) -> dict[str, str]:
    """network name -> bridge name, from a hash of the network's name alone.

    Not from its position in a list: a link added to the model would shift every later name,
    and `lab up` would then unplug running hosts to reuse the names (found by the links test).
    The bridge's ports are named <bridge>p<member index>, so 11 characters leave room.
    """
    return {
        net.name: "b" + hashlib.sha256(net.name.encode()).hexdigest()[:10] for net in topo.networks
    }


def ensure_namespace(lab: str) -> None:
    ns = namespace(lab)
    if ns not in list_namespaces():
        _run(["ip", "netns", "add", ns])
        # The switch itself must be silent: no IPv6 link-local addresses, router solicitations
        # or neighbour discovery of its own on the segments it bridges.
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]
        )
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])


def list_namespaces() -> list[str]:
    proc = _run(["ip", "-j", "netns", "list"], check=False)
    try:
        return [entry["name"] for entry in json.loads(proc.stdout or "[]")]
    except json.JSONDecodeError:
        return []


def delete_namespace(lab: str) -> bool:
    ns = namespace(lab)
    if ns in list_namespaces():
        _run(["ip", "netns", "delete", ns])
        return True
    return False


def _links_in(ns: str) -> dict[str, dict[str, object]]:
    proc = _run(["ip", "-n", ns, "-j", "link", "show"])
    return {entry["ifname"]: entry for entry in json.loads(proc.stdout or "[]")}


def _in_container(pid: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command of this machine inside a container's network namespace."""
    return _run(["nsenter", "-t", str(pid), "-n", *argv], check=check)


def _container_links(pid: int) -> set[str]:
    proc = _in_container(pid, "ip", "-j", "link", "show")
    return {entry["ifname"] for entry in json.loads(proc.stdout or "[]")}


def _plug(ns: str, switch_end: str, pid: int, iface: str) -> None:
    """A veth pair: ``switch_end`` stays in the switch namespace, the other end becomes
    ``iface`` (up) in the container whose init has ``pid``."""
    temporary = f"{switch_end}t"
    _run(["ip", "-n", ns, "link", "del", switch_end], check=False)  # left by a stopped host
    _run(["ip", "-n", ns, "link", "add", switch_end, "type", "veth", "peer", "name", temporary])
    _run(["ip", "-n", ns, "link", "set", temporary, "netns", str(pid)])
    _in_container(pid, "ip", "link", "set", temporary, "name", iface)
    _in_container(pid, "ip", "link", "set", iface, "up")
    _checksum_offload_off(pid, iface)


def wire(lab: str, topo: Topology, pids: dict[str, int]) -> None:
    """Create every bridge and plug every host in; already-present pieces are left alone."""
    ns = namespace(lab)
    ensure_namespace(lab)
    bridges = bridge_names(topo)
    existing = _links_in(ns)
    for net in topo.networks:
        bridge = bridges[net.name]
        if bridge not in existing:
            _run(["ip", "-n", ns, "link", "add", bridge, "type", "bridge"])
            # No STP and no forwarding delay: the lab's segments have no loops of their own.
            _run(
                [
                    "ip",
                    "-n",
                    ns,
                    "link",
                    "set",
                    bridge,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                ]
            )
        _run(["ip", "-n", ns, "link", "set", bridge, "up"])
    present = {host: _container_links(pid) for host, pid in pids.items()}
    for net in topo.networks:
        bridge = bridges[net.name]
        for index, member in enumerate(net.members):
            pid = pids.get(member.host)
            if pid is None or member.iface in present[member.host]:
                continue
            port = f"{bridge}p{index}"
            _plug(ns, port, pid, member.iface)
            _run(["ip", "-n", ns, "link", "set", port, "master", bridge, "up"])


def plug_device(lab: str, topo: Topology, network: str, pid: int, tag: str) -> None:
    """Plug a device that is not a lab host (a visitor's laptop a test brings: any process with
    a network namespace of its own) into a network of the lab, as its ``eth0``. The port is
    ``<bridge><tag>``; it goes away with the device's namespace."""
    ns = namespace(lab)
    bridge = bridge_names(topo)[network]
    port = f"{bridge}{tag}"
    if len(port) > 15 or not tag.isalnum():
        raise SwitchError(f"tag '{tag}' makes no port name: use up to 3 letters or digits")
    _plug(ns, port, pid, "eth0")
    _run(["ip", "-n", ns, "link", "set", port, "master", bridge, "up"])


def _checksum_offload_off(pid: int, iface: str) -> None:
    # Captured frames must carry real checksums, or IDSs flag every packet as invalid.
    if shutil.which("ethtool"):
        _in_container(pid, "ethtool", "-K", iface, "tx", "off", check=False)


def bridge_ports(lab: str, bridge: str) -> list[str]:
    proc = _run(["ip", "-n", namespace(lab), "-j", "link", "show", "master", bridge])
    return sorted(entry["ifname"] for entry in json.loads(proc.stdout or "[]"))


def attach_capture(lab: str, topo: Topology, network: str, sensor_pid: int, iface: str) -> None:
    """Mirror every frame that enters the network's bridge to ``iface`` on the sensor."""
    ns = namespace(lab)
    bridge = bridge_names(topo)[network]
    mirror = f"{bridge}m"
    if iface not in _container_links(sensor_pid):
        _plug(ns, mirror, sensor_pid, iface)
        _in_container(sensor_pid, "ip", "link", "set", iface, "promisc", "on")
        _run(["ip", "-n", ns, "link", "set", mirror, "up"])
    for port in bridge_ports(lab, bridge):
        # Ingress of every port is every frame on the segment, each exactly once.
        _run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", port, "clsact"])
        # u32 "match u32 0 0" matches every frame (this kernel has no matchall classifier).
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "tc",
                "filter",
                "replace",
                "dev",
                port,
                "ingress",
                "pref",
                "10",
                "protocol",
                "all",
                "u32",
                "match",
                "u32",
                "0",
                "0",
                "action",
                "mirred",
                "egress",
                "mirror",
                "dev",
                mirror,
            ]
        )
