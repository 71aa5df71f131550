"""Test hosts for the lab: one systemd container per inventory host.

Every container carries the label ``org.kastro.lab=<lab name>``; ``down`` removes by that
label, so it never touches anything it did not create. The connection details are
written as an inventory overlay that Ansible reads beside the real inventory.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kastro.lab.image import IMAGE_NAME

LAB_LABEL = "org.kastro.lab"
STATE_DIR = Path(".kastro/lab")


class LabError(RuntimeError):
    """The lab could not be brought to the asked state; the message says why and what to do."""


@dataclass(frozen=True)
class LabHost:
    name: str
    container: str
    state: str


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()[-1000:]}")
    return proc


def inventory_hosts(inventory: Path) -> list[str]:
    """Host names of an Ansible inventory, as Ansible itself parses it."""
    if not inventory.exists():
        raise LabError(
            f"inventory '{inventory}' does not exist; give the path of an inventory directory"
        )
    proc = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"ansible-inventory could not read '{inventory}': {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    # Hosts without variables appear only in their groups' "hosts" lists, not in _meta.
    hosts = sorted({host for group in data.values() for host in group.get("hosts", [])})
    if not hosts:
        raise LabError(f"inventory '{inventory}' has no hosts")
    return hosts


def container_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def list_hosts(lab: str) -> list[LabHost]:
    proc = _podman("ps", "-a", "--filter", f"label={LAB_LABEL}={lab}", "--format", "json")
    rows = json.loads(proc.stdout or "[]")
    hosts = [
        LabHost(
            name=row["Labels"].get(f"{LAB_LABEL}.host", row["Names"][0]),
            container=row["Names"][0],
            state=row["State"],
        )
        for row in rows
    ]
    return sorted(hosts, key=lambda h: h.name)


def up(inventory: Path, lab: str, image: str = f"{IMAGE_NAME}:latest") -> Path:
    """Start one container per inventory host (idempotent) and write the connection overlay."""
    wanted = inventory_hosts(inventory)
    existing = {h.name: h for h in list_hosts(lab)}
    for host in wanted:
        name = container_name(lab, host)
        current = existing.get(host)
        if current and current.state == "running":
            continue
        if current:
            _podman("start", name)
            continue
        _podman(
            "run",
            "--detach",
            "--name",
            name,
            "--hostname",
            host,
            "--label",
            f"{LAB_LABEL}={lab}",
            "--label",
            f"{LAB_LABEL}.host={host}",
            "--systemd=always",
            "--cap-add=NET_ADMIN,NET_RAW,SYS_ADMIN",
            "--device=/dev/net/tun",
            "--no-hosts",
            image,
            "/sbin/init",
        )
    for host in wanted:
        wait_until_booted(container_name(lab, host))
    return write_overlay(lab, wanted)


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
        f"host {container} did not finish booting within {timeout:.0f}s (systemd says "
        f"'{state or 'no answer'}'); see 'podman logs {container}'"
    )


def write_overlay(lab: str, hosts: list[str]) -> Path:
    overlay = {
        "all": {
            "hosts": {
                host: {
                    "ansible_connection": "containers.podman.podman",
                    "ansible_host": container_name(lab, host),
                }
                for host in hosts
            }
        }
    }
    path = STATE_DIR / lab / "inventory.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `kastro lab up`: how Ansible reaches the lab hosts.\n"
        + yaml.safe_dump(overlay, sort_keys=True),
        encoding="utf-8",
    )
    return path


def down(lab: str) -> list[str]:
    """Remove every container of this lab (by label) and its overlay. Returns what was removed."""
    removed = [h.container for h in list_hosts(lab)]
    if removed:
        _podman("rm", "--force", "--time", "5", *removed)
    overlay = STATE_DIR / lab / "inventory.yml"
    overlay.unlink(missing_ok=True)
    return removed


def host_report(lab: str) -> list[dict[str, str]]:
    """What the playbooks left on each running lab host, read from the host itself."""
    probes = {
        "hostname": "hostname",
        "timezone": "cat /etc/timezone",
        "ssh": "systemctl is-active ssh",
        "password_login": "sshd -T | awk '/^passwordauthentication/ {print $2}'",
        "admins": "getent group kastro-admins | cut -d: -f4",
        "auto_updates": "apt-config dump APT::Periodic::Unattended-Upgrade | cut -d'\"' -f2",
    }
    rows: list[dict[str, str]] = []
    for host in list_hosts(lab):
        row = {"host": host.name, "state": host.state}
        if host.state == "running":
            for key, command in probes.items():
                proc = _podman("exec", host.container, "sh", "-c", command, check=False)
                row[key] = proc.stdout.strip() or "-"
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no hosts)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(row.get(c, "")) for row in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(row.get(c, "").ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)
