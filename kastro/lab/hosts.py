"""The lab: one systemd container per host, wired as the inventory says, reached over SSH.

Everything the lab creates carries the label ``org.kastro.lab=<lab>`` (containers, the
management network) or the lab's name (the switch namespace, ``.kastro/lab/<lab>/``), so
``down`` removes exactly that and nothing else. Ansible reaches the hosts by SSH over the
management network with a key made for this lab, so a host's firewall really sits between
the controller and the host. Connection details are written as an inventory overlay:
``ansible-playbook -i inventory/example -i .kastro/lab/<lab>/inventory.yml ...``.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netaddr
import yaml

from kastro.i18n import t
from kastro.inventory.loader import MODEL_KEYS
from kastro.inventory.project import load_model, read_previous_plan
from kastro.lab import switch
from kastro.lab.image import IMAGE_NAME
from kastro.lab.topology import (
    BACKBONE_IFACE,
    INTERNET_HOST,
    ISP_NAT,
    OUTSIDE_GROUP,
    OUTSIDE_HOSTS,
    WAN_IFACE,
    LabHostSpec,
    Topology,
    build_topology,
    failover_uplinks,
    isp_router,
)

LAB_LABEL = "org.kastro.lab"
STATE_DIR = Path(".kastro/lab")


class LabError(RuntimeError):
    """The lab could not be brought to the asked state; the message says why and what to do."""


@dataclass(frozen=True)
class LabHost:
    name: str
    container: str
    state: str
    role: str
    management_ip: str


def _podman(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, input=stdin
    )
    if check and proc.returncode != 0:
        raise LabError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()[-1000:]}")
    return proc


def podman(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """podman with argument lists (never a shell); a failure is a LabError naming it."""
    return _podman(*args, check=check, stdin=stdin)


def state_dir(lab: str) -> Path:
    return (STATE_DIR / lab).resolve()


def container_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def management_network(lab: str) -> str:
    return f"{lab}-mgmt"


def _has_model(inventory: Path) -> bool:
    directory = inventory / "group_vars" / "all"
    if not directory.is_dir():
        return False
    return any(
        key in path.read_text(encoding="utf-8", errors="replace")
        for path in directory.glob("*.y*ml")
        for key in MODEL_KEYS
    )


def lab_topology(inventory: Path) -> Topology:
    """The full network for an inventory with a Kastro model; bare hosts otherwise."""
    if not inventory.exists():
        raise LabError(
            t(
                "inventory '{inventory}' does not exist; give the path of an inventory directory",
                inventory=inventory,
            )
        )
    if inventory.is_dir() and _has_model(inventory):
        model, _ = load_model(inventory)  # raises with every inventory error
        return build_topology(model)
    topo = Topology()
    for name in inventory_hosts(inventory):
        topo.hosts[name] = LabHostSpec(name, "host", None, forwarding=False)
    return topo


def inventory_hosts(inventory: Path) -> list[str]:
    """Host names of an Ansible inventory, as Ansible itself parses it."""
    proc = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(
            t(
                "ansible-inventory could not read '{inventory}': {detail}",
                inventory=inventory,
                detail=proc.stderr.strip(),
            )
        )
    data = json.loads(proc.stdout)
    # Hosts without variables appear only in their groups' "hosts" lists, not in _meta.
    hosts = sorted({host for group in data.values() for host in group.get("hosts", [])})
    if not hosts:
        raise LabError(t("inventory '{inventory}' has no hosts", inventory=inventory))
    return hosts


def list_hosts(lab: str) -> list[LabHost]:
    proc = _podman("ps", "-a", "--filter", f"label={LAB_LABEL}={lab}", "--format", "json")
    hosts = []
    for row in json.loads(proc.stdout or "[]"):
        labels = row.get("Labels") or {}
        hosts.append(
            LabHost(
                name=labels.get(f"{LAB_LABEL}.host", row["Names"][0]),
                container=row["Names"][0],
                state=row["State"],
                role=labels.get(f"{LAB_LABEL}.role", ""),
                management_ip=_management_ip(row["Names"][0], lab)
                if row["State"] == "running"
                else "",
            )
        )
    return sorted(hosts, key=lambda h: h.name)


def _management_ip(container: str, lab: str) -> str:
    proc = _podman(
        "inspect",
        "--format",
        f'{{{{(index .NetworkSettings.Networks "{management_network(lab)}").IPAddress}}}}',
        container,
        check=False,
    )
    return proc.stdout.strip()


def _pid(container: str) -> int:
    return int(_podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip())


def _ensure_key(lab: str) -> Path:
    key = state_dir(lab) / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"kastro-lab-{lab}",
                "-f",
                str(key),
            ],
            check=True,
        )
    key.chmod(0o600)
    return key


def _ensure_management_network(lab: str) -> None:
    name = management_network(lab)
    if _podman("network", "exists", name, check=False).returncode != 0:
        _podman("network", "create", "--label", f"{LAB_LABEL}={lab}", name)


def up(inventory: Path, lab: str, image: str = f"{IMAGE_NAME}:latest") -> Path:
    """Bring the lab to the state the inventory describes; running hosts are left as they are."""
    topo = lab_topology(inventory)
    if _podman("image", "exists", image, check=False).returncode != 0:
        raise LabError(t("image {image} is missing; build it with 'kastro lab image'", image=image))
    key = _ensure_key(lab)
    _ensure_management_network(lab)
    existing = {h.name: h for h in list_hosts(lab)}
    for spec in topo.hosts.values():
        name = container_name(lab, spec.name)
        current = existing.get(spec.name)
        if current and current.state == "running":
            continue
        if current:
            _podman("start", name)
            continue
        _podman(*_run_args(lab, spec, image))
    pids = {}
    for spec in topo.hosts.values():
        wait_until_booted(container_name(lab, spec.name))
        pids[spec.name] = _pid(container_name(lab, spec.name))
    if topo.networks:
        try:
            switch.wire(lab, topo, pids)
        except switch.SwitchError as exc:
            raise LabError(str(exc)) from exc
    public_key = key.with_suffix(".pub").read_text(encoding="utf-8")
    known_hosts: list[str] = []
    for spec in topo.hosts.values():
        container = container_name(lab, spec.name)
        _podman(
            "exec",
            "-i",
            container,
            "sh",
            "-c",
            "umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys",
            stdin=public_key,
        )
        host_key = _wait_for_ssh(container)
        known_hosts.append(f"{_management_ip(container, lab)} {host_key}")
    (state_dir(lab) / "known_hosts").write_text("\n".join(known_hosts) + "\n", encoding="utf-8")
    _write_ssh_config(lab, topo, key)
    _reapply_captures(lab, topo, pids)
    if inventory.is_dir() and _has_model(inventory):
        _address_lab(lab, topo, inventory)
    return write_overlay(lab, topo, key)


def _address_lab(lab: str, topo: Topology, inventory: Path) -> None:
    """Addresses and routes no role sets in the lab: the hosts in their zones, the outside
    hosts on the uplinks' ISP networks, the buildings behind the ISP's NAT."""
    model = load_model(inventory)[0]
    municipality = model.municipality
    supernets = [*municipality.supernets_v4, *municipality.supernets_v6] if municipality else []
    failover = failover_uplinks(model)
    own_segment = {up.name for rank, up in failover if rank > 0}
    # The uplinks' ISP networks stand for the internet: the hosts reach them through their
    # gateway (published services answer there), the outside hosts live on them.
    isp = [
        net
        for up in (municipality.uplinks if municipality else ())
        if up.name not in own_segment  # a further uplink's network is on a segment of its own
        for net in (up.network(4), up.network(6))
        if net is not None
    ]
    beyond = [BACKBONE] if failover else []
    _address_hosts(
        lab, topo, read_previous_plan(inventory), [str(n) for n in [*supernets, *isp, *beyond]]
    )
    _address_outside(lab, [str(n) for n in isp])
    _address_isp_routers(lab, [up for _, up in failover])
    _address_behind_nat(lab, topo, [n for n in isp if n.version == 4], supernets)


def _address_hosts(lab: str, topo: Topology, plan: dict[str, object], supernets: list[str]) -> None:
    """Servers, sensors and endpoints get their planned address in their zone, and a route to
    the municipality's networks through their zone's gateway, as on a real network (no role
    addresses them; gateways get theirs from the links role). The default route stays on the
    management network. `replace`: running it again changes nothing."""
    hosts_plan = plan.get("hosts") or {}
    zones_plan = plan.get("zones") or {}
    assert isinstance(hosts_plan, dict) and isinstance(zones_plan, dict)
    for name, spec in topo.hosts.items():
        if name in OUTSIDE_HOSTS:
            _keep_inside(container_name(lab, name), supernets)
            continue
        entry = hosts_plan.get(name) or {}
        zone = zones_plan.get(entry.get("zone")) or {}
        iface = topo.interfaces(name).get(f"zone:{entry.get('zone')}")
        if spec.role == "gateway" or not (entry.get("ipv4") and zone and iface):
            continue
        container = container_name(lab, name)
        prefix = str(zone["ipv4"]).split("/")[1]
        _podman(
            "exec", container, "ip", "addr", "replace", f"{entry['ipv4']}/{prefix}", "dev", iface
        )
        if entry.get("ipv6") and zone.get("gateway_ipv6"):
            _podman(
                "exec",
                container,
                "ip",
                "-6",
                "addr",
                "replace",
                f"{entry['ipv6']}/64",
                "dev",
                iface,
                "nodad",
            )
        for net in supernets:
            via = zone.get("gateway_ipv6" if ":" in net else "gateway_ipv4")
            if via:
                _podman(
                    "exec", container, "ip", "route", "replace", net, "via", str(via), "dev", iface
                )


# Where the lab's outside hosts sit on each ISP network (home .10, attacker .20; ::10, ::20).
OUTSIDE_OFFSETS = {"home": 10, "attacker": 20}


def _address_outside(lab: str, networks: list[str]) -> None:
    """The outside hosts' addresses on the uplinks' ISP networks (TEST-NET and documentation
    prefixes in the lab inventories: they exist nowhere but inside the lab)."""
    for name, offset in OUTSIDE_OFFSETS.items():
        for text in networks:
            net = netaddr.IPNetwork(text)
            address = f"{netaddr.IPAddress(net.first + offset, net.version)}/{net.prefixlen}"
            family = ["-6"] if net.version == 6 else []
            extra = ["nodad"] if net.version == 6 else []
            _podman(
                "exec", container_name(lab, name), "ip", *family, "addr", "replace", address,
                "dev", WAN_IFACE, *extra,
            )  # fmt: skip


# The ISP's NAT: its address on the internet segment, and 100.64.N.0/24 (RFC 6598 shared
# address space, what carrier-grade NAT uses) towards the N-th building behind it.
ISP_NAT_OFFSET = 30
NAT_SIDE = "100.64.{index}.{host}/24"
ISP_NAT_RULESET = """table ip lab_isp_nat
delete table ip lab_isp_nat
table ip lab_isp_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "WAN" ip saddr 100.64.0.0/10 masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        oifname "WAN" ip saddr 100.64.0.0/10 accept
    }
}
"""


def _address_behind_nat(
    lab: str, topo: Topology, networks: list[netaddr.IPNetwork], supernets: list[Any]
) -> None:
    """The buildings whose uplinks have no fixed address reach the internet segment through
    the lab's ISP NAT, as a village office on 4G does: their gateway's packets leave with the
    NAT's address, and nothing on the internet side can open a connection to them."""
    if ISP_NAT not in topo.hosts or not networks:
        return
    nat = container_name(lab, ISP_NAT)
    first = networks[0]
    outside = f"{netaddr.IPAddress(first.first + ISP_NAT_OFFSET)}/{first.prefixlen}"
    _podman("exec", nat, "ip", "addr", "replace", outside, "dev", WAN_IFACE)
    _keep_inside(nat, [str(n) for n in supernets])
    ruleset = ISP_NAT_RULESET.replace("WAN", WAN_IFACE)
    _podman("exec", "-i", nat, "nft", "-f", "-", stdin=ruleset)
    sides = [n for n in topo.networks if n.kind == "isp"]
    for index, network in enumerate(sorted(sides, key=lambda n: n.name), start=1):
        gateway = next(a for a in network.members if a.host != ISP_NAT)
        router = next(a for a in network.members if a.host == ISP_NAT)
        near = NAT_SIDE.format(index=index, host=1)
        _podman("exec", nat, "ip", "addr", "replace", near, "dev", router.iface)
        inside = container_name(lab, gateway.host)
        far = NAT_SIDE.format(index=index, host=2)
        _podman("exec", inside, "ip", "addr", "replace", far, "dev", gateway.iface)
        for net in networks:  # the default route stays on the lab's management network
            _podman("exec", inside, "ip", "route", "replace", str(net), "via",
                    near.split("/")[0], "dev", gateway.iface)  # fmt: skip


# The lab's internet beyond the ISP routers (198.18.0.0/24, RFC 2544's benchmarking range; never
# 203.0.113.0/24: this machine's package mirror answers there): router N at .N+1, the internet host
# at .100. Each router forwards between its uplink and the backbone only (never to its
# management network's default route), and nothing from the municipality's own addresses.
BACKBONE = netaddr.IPNetwork("198.18.0.0/24")
INTERNET_HOST_ADDRESS = "198.18.0.100"
# As real ISPs do (BCP 38), a router forwards from its customer only the addresses it gave
# them: a reply that leaves by the wrong ISP is lost, as it would be on the internet.
ISP_ROUTER_RULESET = """table inet lab_isp
delete table inet lab_isp
table inet lab_isp {
    chain forward {
        type filter hook forward priority filter; policy drop;
        iifname "WAN" oifname "BB" ip saddr NETWORK accept
        iifname "BB" oifname "WAN" accept
    }
}
"""


def _address_isp_routers(lab: str, uplinks: list[Any]) -> None:
    """The ISP routers at their uplinks' gateway addresses, and the internet host behind them
    with a route to each uplink's network through its router."""
    if not uplinks:
        return
    inet = container_name(lab, INTERNET_HOST)
    _podman("exec", inet, "ip", "addr", "replace", f"{INTERNET_HOST_ADDRESS}/24", "dev",
            BACKBONE_IFACE)  # fmt: skip
    for index, up in enumerate(uplinks, start=1):
        router = container_name(lab, isp_router(up))
        near = str(netaddr.IPAddress(BACKBONE.first + index))
        _podman("exec", router, "ip", "addr", "replace", f"{near}/24", "dev", BACKBONE_IFACE)
        for version in (4, 6):
            gateway, net = getattr(up, f"gateway_ipv{version}"), up.network(version)
            if gateway is None or net is None:
                continue
            family = ["-6"] if version == 6 else []
            extra = ["nodad"] if version == 6 else []
            _podman("exec", router, "ip", *family, "addr", "replace",
                    f"{gateway}/{net.prefixlen}", "dev", WAN_IFACE, *extra)  # fmt: skip
            if version == 4:
                _podman("exec", inet, "ip", "route", "replace", str(net), "via", near)
        ruleset = (
            ISP_ROUTER_RULESET.replace("WAN", WAN_IFACE)
            .replace("BB", BACKBONE_IFACE)
            .replace("NETWORK", str(up.network(4)))
        )
        _podman("exec", "-i", router, "nft", "-f", "-", stdin=ruleset)


def _keep_inside(container: str, supernets: list[str]) -> None:
    """The internet side's hosts reach the municipality's networks on their internet segment
    (as a neighbour on the ISP's network would), never through their default route: that one
    leaves the lab through podman's NAT, and a test's packet to a municipal address must never
    reach a network this machine does not own."""
    for net in supernets:
        family = ["-6"] if ":" in net else []
        _podman("exec", container, "ip", *family, "route", "replace", net, "dev", WAN_IFACE)


def _run_args(lab: str, spec: LabHostSpec, image: str) -> list[str]:
    args = [
        "run",
        "--detach",
        "--name",
        container_name(lab, spec.name),
        "--hostname",
        spec.name,
        "--label",
        f"{LAB_LABEL}={lab}",
        "--label",
        f"{LAB_LABEL}.host={spec.name}",
        "--label",
        f"{LAB_LABEL}.role={spec.role}",
        "--network",
        management_network(lab),
        "--systemd=always",
        "--cap-add=NET_ADMIN,NET_RAW,SYS_ADMIN",
        "--device=/dev/net/tun",
        "--no-hosts",
    ]
    if spec.forwarding:
        # Per-namespace sysctls can only be set when the container starts (/proc/sys is read-only).
        args += ["--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "net.ipv6.conf.all.forwarding=1"]
    return [*args, image, "/sbin/init"]


def wait_until_booted(container: str, timeout: float = 90.0) -> None:
    """Return once systemd in the container has finished booting (running or degraded)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = _podman("exec", container, "systemctl", "is-system-running", check=False)
        state = proc.stdout.strip()
        if state in {"running", "degraded"}:
            return
        time.sleep(0.5)
    raise LabError(
        t(
            "host {container} did not finish booting within {timeout:.0f}s "
            "(systemd says '{state}'); see 'podman logs {container}'",
            container=container,
            timeout=timeout,
            state=state or "no answer",
        )
    )


def _wait_for_ssh(container: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = _podman("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False)
        active = _podman("exec", container, "systemctl", "is-active", "ssh", check=False)
        if proc.returncode == 0 and active.stdout.strip() == "active":
            kind, key = proc.stdout.split()[:2]
            return f"{kind} {key}"
        time.sleep(0.5)
    raise LabError(
        t(
            "sshd on {container} did not start within {timeout:.0f}s; see 'podman "
            "logs {container}'",
            container=container,
            timeout=timeout,
        )
    )


def _ssh_args(lab: str) -> str:
    return (
        f"-o UserKnownHostsFile={state_dir(lab) / 'known_hosts'} -o StrictHostKeyChecking=yes "
        f"-o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPersist=60s"
    )


def _write_ssh_config(lab: str, topo: Topology, key: Path) -> None:
    lines = [f"# Written by 'kastro lab up': ssh -F {state_dir(lab) / 'ssh_config'} HOST"]
    for spec in topo.hosts.values():
        lines += [
            f"Host {spec.name}",
            f"  HostName {_management_ip(container_name(lab, spec.name), lab)}",
            "  User root",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {state_dir(lab) / 'known_hosts'}",
            "  StrictHostKeyChecking yes",
        ]
    (state_dir(lab) / "ssh_config").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_overlay(lab: str, topo: Topology, key: Path) -> Path:
    hostvars: dict[str, dict[str, object]] = {}
    for spec in topo.hosts.values():
        hostvars[spec.name] = {
            "ansible_host": _management_ip(container_name(lab, spec.name), lab),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": _ssh_args(lab),
            "kastro_interfaces": topo.interface_vars(spec.name),
        }
        if spec.role == "gateway":
            # The lab's gateways keep their own default route on the management network
            # (apt); their zones' traffic follows the uplink in use (roles/uplinks).
            hostvars[spec.name]["uplinks_own_traffic_via_main"] = True
    overlay = {
        "all": {
            "hosts": hostvars,
            "children": {
                OUTSIDE_GROUP: {
                    "hosts": {
                        name: None
                        for name, s in topo.hosts.items()
                        if s.building is None and s.role != "host"
                    }
                },
                # This machine is outside the lab's management network: its browser (tests,
                # demo) reaches the monitoring UIs through SSH (ssh -L) on those hosts only.
                "monitoring_servers": {"vars": {"base_ssh_allow_tcp_forwarding": True}},
                # ... and outside the municipality's networks, where Suricata's "management
                # protocol from the internet" rule would see every Ansible run: suppressed for
                # this machine's address alone, as an admin tunes a known source.
                "sensors": {"vars": {"suricata_thresholds": _controller_suppressions(lab)}},
            },
        }
    }
    path = state_dir(lab) / "inventory.yml"
    path.write_text(
        "# Written by 'kastro lab up': how Ansible reaches the lab hosts, and their interfaces.\n"
        + yaml.safe_dump(overlay, sort_keys=True),
        encoding="utf-8",
    )
    return path


def _controller_suppressions(lab: str) -> list[dict[str, object]]:
    """Suppress SID 9200010 (kastro/suricata/rules) for this machine's addresses on the lab's
    management network (its gateways: where Ansible's SSH comes from)."""
    shown = _podman(
        "network", "inspect", management_network(lab),
        "--format", "{{range .Subnets}}{{.Gateway}} {{end}}",
    ).stdout  # fmt: skip
    return [
        {"sid": 9200010, "type": "suppress", "track": "by_src", "ip": address}
        for address in shown.split()
    ]


def _captures_file(lab: str) -> Path:
    return state_dir(lab) / "captures.json"


def _load_captures(lab: str) -> dict[str, dict[str, str]]:
    path = _captures_file(lab)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def capture(inventory: Path, lab: str, network: str, sensor: str) -> str:
    """Mirror a zone or link network to a sensor host; returns the sensor's capture interface."""
    topo = lab_topology(inventory)
    names = sorted(n.name for n in topo.networks)
    if network not in names:
        raise LabError(
            t(
                "no network '{network}' in this lab; choose one of: {names}",
                network=network,
                names=", ".join(names),
            )
        )
    if sensor not in topo.hosts:
        raise LabError(
            t(
                "no host '{sensor}' in this lab; choose one of: {hosts}",
                sensor=sensor,
                hosts=", ".join(sorted(topo.hosts)),
            )
        )
    captures = _load_captures(lab)
    iface = captures.get(network, {}).get("iface") or f"cap{len(captures)}"
    try:
        switch.attach_capture(lab, topo, network, _pid(container_name(lab, sensor)), iface)
    except switch.SwitchError as exc:
        raise LabError(str(exc)) from exc
    captures[network] = {"sensor": sensor, "iface": iface}
    _captures_file(lab).write_text(json.dumps(captures, indent=2, sort_keys=True), encoding="utf-8")
    return iface


def _reapply_captures(lab: str, topo: Topology, pids: dict[str, int]) -> None:
    for network, entry in _load_captures(lab).items():
        if entry["sensor"] in pids:
            switch.attach_capture(lab, topo, network, pids[entry["sensor"]], entry["iface"])


def down(lab: str) -> list[str]:
    """Remove every container, network and namespace of this lab, and its state directory."""
    removed = [h.container for h in list_hosts(lab)]
    if removed:
        _remove_containers(removed)
    networks = _podman(
        "network", "ls", "--filter", f"label={LAB_LABEL}={lab}", "--format", "{{.Name}}"
    )
    for name in networks.stdout.split():
        _podman("network", "rm", "--force", name)
        removed.append(f"network {name}")
    if switch.delete_namespace(lab):
        removed.append(f"namespace {switch.namespace(lab)}")
    directory = state_dir(lab)
    if directory.exists():
        for path in sorted(directory.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        directory.rmdir()
    return removed


def _remove_containers(names: list[str], attempts: int = 3) -> None:
    """podman rm --force, again while a container is left: on a loaded machine, processes
    killed with SIGKILL can outlive podman's wait ("given PIDs did not die within timeout",
    seen once in CI), and are gone a few seconds later."""
    for attempt in range(attempts):
        done = _podman("rm", "--force", "--ignore", "--time", "5", *names, check=False)
        if done.returncode == 0:
            return
        left = set(_podman("ps", "-a", "--format", "{{.Names}}").stdout.split())
        names = [n for n in names if n in left]
        if not names:
            return
        if attempt < attempts - 1:
            time.sleep(5)
    raise LabError(f"podman rm --force failed: {done.stderr.strip()[-1000:]}")


def status_rows(lab: str) -> list[dict[str, str]]:
    networks = _network_membership(lab)
    return [
        {
            "host": h.name,
            "role": h.role,
            "state": h.state,
            "management": h.management_ip,
            "networks": " ".join(networks.get(h.name, [])) or "-",
        }
        for h in list_hosts(lab)
    ]


def _network_membership(lab: str) -> dict[str, list[str]]:
    overlay = state_dir(lab) / "inventory.yml"
    if not overlay.exists():
        return {}
    data = yaml.safe_load(overlay.read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for host, hostvars in (data["all"].get("hosts") or {}).items():
        ifaces = hostvars.get("kastro_interfaces", {})
        names = [f"{zone}({iface})" for zone, iface in sorted(ifaces.get("zones", {}).items())]
        names += [f"{link}({iface})" for link, iface in sorted(ifaces.get("links", {}).items())]
        if "wan" in ifaces:
            names.append(f"internet({ifaces['wan']})")
        out[host] = names
    return out


def host_report(lab: str) -> list[dict[str, str]]:
    """What the playbooks left on each running lab host, read from the host itself."""
    probes = {
        "hostname": "hostname",
        "timezone": "cat /etc/timezone",
        "ssh": "systemctl is-active ssh",
        "password_login": "sshd -T | awk '/^passwordauthentication/ {print $2}'",
        "admins": "getent group kastro-admins | cut -d: -f4",
        "auto_updates": "apt-config dump APT::Periodic::Unattended-Upgrade | cut -d'\"' -f2",
        # Gateways: OSPF adjacencies that are Full, and WireGuard tunnels to other buildings.
        "ospf_full": (
            "command -v vtysh >/dev/null && vtysh -c 'show ip ospf neighbor' | grep -c Full"
        ),
        "link_tunnels": "ls /sys/class/net | grep -c '^wl-' || true",
    }
    rows: list[dict[str, str]] = []
    for host in list_hosts(lab):
        row = {"host": host.name, "role": host.role}
        if host.state == "running":
            for key, command in probes.items():
                proc = _podman("exec", host.container, "sh", "-c", command, check=False)
                row[key] = proc.stdout.strip() or "-"
        rows.append(row)
    return rows


def memory_usage_bytes(lab: str) -> int:
    """Resident memory of every process in the lab's hosts (sum of RSS; page cache excluded)."""
    total_kib = 0
    for host in list_hosts(lab):
        if host.state != "running":
            continue
        proc = _podman("top", host.container, "rss", check=False)
        for line in proc.stdout.splitlines()[1:]:
            value = line.strip()
            if value.isdigit():
                total_kib += int(value)
    return total_kib * 1024
