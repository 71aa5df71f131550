"""A Debian 12 virtual machine under QEMU, for the checks containers cannot make.

Containers share this machine's kernel: sysctl is read-only in them, auditd cannot start,
kernel modules are the machine's. A VM has a kernel of its own. KVM is not available here,
so QEMU emulates (TCG): slower, so only the kernel-level checks run in it, all in one VM.

The image is built once per recipe into ``.kastro/vm/<digest>/`` (debootstrap with Debian's
cloud kernel, a root disk made by ``mkfs.ext4 -d``, host keys and a client key made for it)
and never changed: each boot writes to a copy-on-write overlay that ``down`` removes. SSH is
forwarded to 127.0.0.1 only; the guest reaches the Debian mirror through QEMU's user-mode
NAT (for apt, as the container hosts do) and nothing else is configured to reach it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kastro.lab.image import BASE_PACKAGES, ImageBuildError, _run, debian_mirror

STATE = Path(".kastro/vm")
ADMIN = "kastro"  # the administrator account the tests connect as (sudo to root)
# The VM's second NIC (eth1 at boot): the example city hall's trunk port (kastro_ports).
SPARE_NIC_MAC = "52:54:00:4b:01:01"
VM_PACKAGES = (
    *(p for p in BASE_PACKAGES if p != "tcpdump"),
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "udev",
    "kmod",
    # What the endpoint role installs, already there (dpkg under emulation is slow), and the
    # tools that measure it: the role's own apt task still runs and finds them present.
    "auditd",
    "libpam-pwquality",
    "cracklib-runtime",
    "apparmor",
    "libpam-apparmor",
    "logrotate",
    "netcat-openbsd",  # the audit test runs it
    "aide",
    "clamav",
    "clamav-testfiles",  # what the antivirus test plants
    # What base installs on every host (chrony, unattended upgrades) and Debian's syslog.
    "chrony",
    "unattended-upgrades",
    "apt-listchanges",
    "rsyslog",
    "rsyslog-gnutls",
    "openscap-scanner",
    "lynis",
    "pamtester",
)
# The disk layout ANSSI-BP-028 R28 recommends for a server, one virtio disk per file system
# (sparse files: a size is an upper bound): mount point, label, size. The endpoint role sets
# nodev, nosuid and noexec on them; the layout itself is the installer's job, not a role's.
LAYOUT = (
    ("/", "root", "1G"),
    ("/boot", "boot", "512M"),
    ("/usr", "usr", "3G"),
    ("/var", "var", "2G"),
    ("/var/log", "varlog", "1G"),
    ("/var/log/audit", "audit", "512M"),
    ("/var/tmp", "vartmp", "512M"),  # noqa: S108 (a mount point)
    ("/home", "home", "512M"),
    ("/opt", "opt", "256M"),
    ("/srv", "srv", "512M"),
)
# Raised when the way the image is built changes (not only what goes in it).
BUILDER = 2
# systemd mounts /dev/shm itself; /tmp is a tmpfs as Debian 13 makes it. Options the
# initramfs's mount knows ("relatime" is not among them: /usr is mounted there).
FSTAB = (
    "".join(
        f"LABEL={label} {point} ext4 defaults 0 {1 if point == '/' else 2}\n"
        for point, label, _size in LAYOUT
    )
    + "tmpfs /tmp tmpfs rw,nosuid,nodev,size=512M,mode=1777 0 0\n"
)
# Inside the unpacked root before the disk is made: part of the recipe's hash.
VM_SETUP = """\
set -e
cat > /etc/apt/sources.list <<EOF
deb $KASTRO_MIRROR bookworm main
deb $KASTRO_MIRROR bookworm-updates main
deb $KASTRO_MIRROR-security bookworm-security main
EOF
echo kastro-vm > /etc/hostname
printf '127.0.0.1 localhost\\n127.0.1.1 kastro-vm\\n' > /etc/hosts
printf '%s' "$KASTRO_FSTAB" > /etc/fstab
: > /etc/machine-id
mkdir -p /etc/systemd/network
cat > /etc/systemd/network/10-kastro.network <<EOF
[Match]
Name=eth0

[Network]
DHCP=ipv4
EOF
systemctl enable systemd-networkd.service ssh.service
# freshclam would ask database.clamav.net at the first boot: masked, as the endpoint role does.
ln -sf /dev/null /etc/systemd/system/clamav-freshclam.service
printf 'nameserver 10.0.2.3\\n' > /etc/resolv.conf
install -d -m 0700 /root/.ssh
passwd -l root
# The administrator the tests connect as (key only, sudo without a password, as base makes
# them): root's SSH login is refused once base runs with base_ssh_permit_root_login no.
useradd -m -s /bin/bash -G sudo kastro
passwd -l kastro
echo 'kastro ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/kastro-vm
chmod 0440 /etc/sudoers.d/kastro-vm
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
touch -d @0 /var/lib/apt/lists
"""


class VmError(RuntimeError):
    """The VM could not be built or reached; the message says which step and what to do."""


def recipe_digest() -> str:
    body = json.dumps(
        {"packages": sorted(VM_PACKAGES), "setup": VM_SETUP, "fstab": FSTAB, "builder": BUILDER}
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A built VM image: its kernel, initrd, root disk and keys."""

    directory: Path

    @property
    def disks(self) -> list[Path]:
        """One raw file system per entry of LAYOUT, in its order (vda is the root)."""
        return [self.directory / f"{label}.raw" for _point, label, _size in LAYOUT]

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def client_public_key(self) -> str:
        return Path(f"{self.client_key}.pub").read_text(encoding="utf-8").strip()

    @property
    def host_key(self) -> str:
        return (self.directory / "ssh_host_ed25519_key.pub").read_text(encoding="utf-8").strip()


def build(state: Path = STATE, mirror: str | None = None) -> Image:
    """The image of the current recipe, built first if it is not there (about 3 minutes)."""
    for tool in ("debootstrap", "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise VmError(
                f"'{tool}' is missing: run 'make deps' (apt-get install qemu-system-x86 "
                "qemu-utils debootstrap e2fsprogs openssh-client)"
            )
    image = Image(state / recipe_digest())
    if (image.directory / "done").exists():
        return image
    if image.directory.exists():
        shutil.rmtree(image.directory)  # a build that stopped half-way
    image.directory.mkdir(parents=True, mode=0o700)
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="kastro-vm-") as tmp:
        root = Path(tmp) / "root"
        _run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(VM_PACKAGES)}",
             "bookworm", str(root), mirror],
            "debootstrap of the VM image",
        )  # fmt: skip
        _run(
            [
                "env",
                f"KASTRO_MIRROR={mirror}",
                f"KASTRO_FSTAB={FSTAB}",
                "chroot",
                str(root),
                "/bin/sh",
                "-c",
                VM_SETUP,
            ],
            "VM setup script",
        )
        _keys(root, image)
        shutil.copyfile(_one(root / "boot", "vmlinuz-*"), image.kernel)
        shutil.copyfile(_one(root / "boot", "initrd.img-*"), image.initrd)
        _file_systems(root, Path(tmp) / "disks", image)
    (image.directory / "done").write_text(recipe_digest(), encoding="utf-8")
    return image


def _file_systems(root: Path, staging: Path, image: Image) -> None:
    """Each mount point's files moved into a tree of its own (the deepest first, so /var/log
    leaves /var with an empty mount point), then one ext4 image made of each tree."""
    trees = {}
    for point, label, _size in sorted(LAYOUT, key=lambda entry: -entry[0].count("/")):
        if point == "/":
            continue
        source, tree = root / point.lstrip("/"), staging / label
        tree.mkdir(parents=True)
        source.mkdir(parents=True, exist_ok=True)
        # The file system's root gets the mount point's mode (/var/tmp: 1777, sticky).
        shutil.copystat(source, tree)
        for child in source.iterdir():
            shutil.move(child, tree / child.name)
        trees[label] = tree
    trees["root"] = root
    for (_point, label, size), disk in zip(LAYOUT, image.disks, strict=True):
        _run(["mkfs.ext4", "-q", "-L", label, "-d", str(trees[label]), str(disk), size],
             f"mkfs.ext4 of the VM's {label} file system")  # fmt: skip


def _one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if not found:
        raise ImageBuildError(f"no {pattern} in {directory}: the kernel package did not install")
    return found[-1]


def _keys(root: Path, image: Image) -> None:
    """The VM's host key (so the controller knows it before the first connection) and the
    controller's key for root, both made for this image."""
    etc_ssh = root / "etc" / "ssh"
    for old in etc_ssh.glob("ssh_host_*"):
        old.unlink()
    host_key = etc_ssh / "ssh_host_ed25519_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kastro-vm", "-f", str(host_key)],
         "ssh-keygen (host key)")  # fmt: skip
    shutil.copyfile(f"{host_key}.pub", image.directory / "ssh_host_ed25519_key.pub")
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kastro-controller", "-f",
          str(image.client_key)], "ssh-keygen (client key)")  # fmt: skip
    key = Path(f"{image.client_key}.pub").read_text(encoding="utf-8")
    authorized = root / "root" / ".ssh" / "authorized_keys"
    authorized.write_text(key)
    authorized.chmod(0o600)
    _run(["chroot", str(root), "install", "-d", "-o", ADMIN, "-g", ADMIN, "-m", "0700",
          f"/home/{ADMIN}/.ssh"], "admin's .ssh")  # fmt: skip
    (root / "home" / ADMIN / ".ssh" / "authorized_keys").write_text(key)
    _run(["chroot", str(root), "chown", f"{ADMIN}:{ADMIN}", f"/home/{ADMIN}/.ssh/authorized_keys"],
         "admin's key")  # fmt: skip


@dataclass
class Machine:
    """A running VM: its SSH port on 127.0.0.1 and its files."""

    name: str
    directory: Path
    image: Image
    port: int
    memory_mb: int = 1024

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def login_argv(self, user: str, *options: str) -> list[str]:
        """ssh to the guest as `user` with the test key and the pinned host key, the command
        still to add; `options` come first, so they win over the defaults (ssh keeps the
        first value it reads)."""
        return [
            "ssh", "-p", str(self.port), "-i", str(self.image.client_key), *options,
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5",
            "-o", "BatchMode=yes", f"{user}@127.0.0.1",
        ]  # fmt: skip

    def ssh_argv(self, *command: str) -> list[str]:
        """As the administrator, through sudo; ssh runs the command through the remote shell,
        so the words are quoted for it."""
        return [*self.login_argv(ADMIN), shlex.join(["sudo", "-n", *command])]

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_argv(*command), capture_output=True, text=True, check=False, timeout=timeout
        )

    def put(self, local: Path, remote: str, timeout: float = 120) -> None:
        """Copy one file into the VM (through ssh's standard input)."""
        with local.open("rb") as source:
            done = subprocess.run(
                self.ssh_argv("dd", f"of={remote}", "status=none"),
                stdin=source, capture_output=True, check=False, timeout=timeout,
            )  # fmt: skip
        if done.returncode != 0:
            raise VmError(f"copy of {local} to {self.name}:{remote} failed: {done.stderr!r}")

    def get(self, remote: str, timeout: float = 300, attempts: int = 3) -> bytes:
        """One file out of the VM, compressed on the way and checked against the guest's own
        SHA-256 (a CI run once read a 20 MB scan result cut short by a plain `cat`)."""
        expected = self.run("sha256sum", remote, timeout=timeout)
        if expected.returncode != 0:
            raise VmError(f"cannot read {self.name}:{remote}: {expected.stderr.strip()}")
        digest = expected.stdout.split()[0]
        for _ in range(attempts):
            done = subprocess.run(
                self.ssh_argv("gzip", "-c", remote), capture_output=True, check=False,
                timeout=timeout,
            )  # fmt: skip
            if done.returncode == 0:
                with contextlib.suppress(OSError, EOFError):
                    data = gzip.decompress(done.stdout)
                    if hashlib.sha256(data).hexdigest() == digest:
                        return data
        raise VmError(f"{self.name}:{remote} arrived damaged {attempts} times")

    def inventory(self) -> dict[str, object]:
        """How Ansible and testinfra reach it (an inventory host's variables)."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": ADMIN,
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(self.image.client_key),
            "ansible_ssh_common_args": (
                f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
            ),
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def up(name: str, image: Image, state: Path = STATE, memory_mb: int = 1024) -> Machine:
    """Boot a VM from `image` on an overlay of its own; return once SSH answers."""
    directory = state / "machines" / name
    if (directory / "qemu.pid").exists():
        down(name, state)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for disk in image.disks:
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(disk.resolve()),
              str(directory / f"{disk.stem}.qcow2")], "qemu-img create")  # fmt: skip
    machine = Machine(name, directory, image, _free_port(), memory_mb)
    machine.known_hosts.write_text(f"[127.0.0.1]:{machine.port} {image.host_key}\n")
    _boot(machine)
    (directory / "port").write_text(str(machine.port))
    _wait_for_ssh(machine, timeout=300)
    return machine


def _boot(machine: Machine) -> None:
    """Start QEMU on the machine's overlay (a reboot inside ends it: -no-reboot). At a lower
    priority (nice 10): the emulated CPU takes what the timed tests beside it leave."""
    directory = machine.directory
    image = machine.image
    _run(
        ["nice", "-n", "10",
         "qemu-system-x86_64", "-name", f"kastro-{machine.name}", "-accel", "tcg", "-cpu", "max",
         "-smp", "2", "-m", str(machine.memory_mb), "-display", "none", "-no-reboot",
         "-kernel", str(image.kernel), "-initrd", str(image.initrd),
         "-append", "console=ttyS0 root=/dev/vda rw net.ifnames=0",
         *(arg for disk in image.disks for arg in (
             "-drive", f"file={directory / disk.stem}.qcow2,format=qcow2,if=virtio")),
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{machine.port}-:22",
         "-device", "virtio-net-pci,netdev=n0",
         # A second NIC with a permanent MAC, wired to nothing (a hub of one port): the port
         # tests/vm/test_vm_ports.py names by its MAC, as a gateway's .link file does.
         "-netdev", "hubport,id=n1,hubid=1",
         "-device", f"virtio-net-pci,netdev=n1,mac={SPARE_NIC_MAC}",
         "-serial", f"file:{directory / 'console.log'}",
         "-daemonize", "-pidfile", str(directory / "qemu.pid")],
        "qemu-system-x86_64",
    )  # fmt: skip


def reboot(machine: Machine, timeout: float = 300) -> float:
    """Reboot the guest the way an admin does (systemctl reboot), boot it again on the same
    disk, and return the seconds until SSH answered again."""
    started = time.monotonic()
    pid = int((machine.directory / "qemu.pid").read_text().strip())
    with contextlib.suppress(subprocess.TimeoutExpired):  # the connection goes down with it
        machine.run("systemctl", "reboot", timeout=30)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise VmError(f"VM {machine.name}: still running {timeout:.0f} s after the reboot")
        time.sleep(1)
    _boot(machine)
    _wait_for_ssh(machine, timeout=timeout)
    return time.monotonic() - started


def _wait_for_ssh(machine: Machine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if machine.run("true", timeout=20).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(3)
    tail = (machine.directory / "console.log").read_text(errors="replace")[-1500:]
    raise VmError(f"VM {machine.name}: no SSH after {timeout:.0f} s; console:\n{tail}")


def down(name: str, state: Path = STATE) -> None:
    """Stop the VM and remove its overlay (the image stays for the next boot)."""
    directory = state / "machines" / name
    pid_file = directory / "qemu.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if f"kastro-{name}".encode() not in cmdline:  # a stale file: that pid is another's
                raise ProcessLookupError(pid)
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            pass
    shutil.rmtree(directory, ignore_errors=True)
