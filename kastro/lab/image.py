"""Build the Debian 12 systemd base image that every Kastro test host runs.

No registry is reachable, so the image is made from Debian packages with debootstrap
and imported into podman. The image tag is a hash of the recipe below: an unchanged
recipe reuses the image that is already there, a changed one builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kastro.i18n import t, tr

IMAGE_NAME = "localhost/kastro-debian12"
RECIPE_LABEL = "org.kastro.recipe"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Packages every host needs before Ansible can manage it, plus what the lab notes
# found necessary (netbase so nft can resolve "icmp"; python3-apt for the apt module).
BASE_PACKAGES: tuple[str, ...] = (
    "python3",
    "python3-apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "nftables",
    "netbase",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "iputils-ping",
    "tzdata",
    "tcpdump",  # every lab host can capture; sensors need it
)

# Run inside the unpacked root before import. Keep it deterministic: it is part of the hash.
SETUP_SCRIPT = """\
set -e
# Security updates must be installable, as on a real municipal host.
cat > /etc/apt/sources.list <<EOF
deb $KASTRO_MIRROR bookworm main
deb $KASTRO_MIRROR bookworm-updates main
deb $KASTRO_MIRROR-security bookworm-security main
EOF
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
# Host keys are made on first boot, so no two hosts share one.
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/kastro-hostkeys.conf <<EOF
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
systemctl enable ssh.service
# Units that only make sense on real hardware, or that fight podman for the console.
systemctl mask systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  getty@tty1.service console-getty.service >/dev/null 2>&1 || true
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# Emptied lists must look stale, or apt's cache_valid_time trusts them for an hour.
touch -d @0 /var/lib/apt/lists
"""


class ImageBuildError(RuntimeError):
    """The base image could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = BASE_PACKAGES
    setup_script: str = SETUP_SCRIPT
    extra: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """Stable hash of everything that decides the image's contents."""
        body = json.dumps(
            {
                "suite": self.suite,
                "variant": self.variant,
                "packages": sorted(self.packages),
                "setup": self.setup_script,
                "extra": self.extra,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{IMAGE_NAME}:{self.digest()}"


def debian_mirror(sources: tuple[Path, ...] | None = None) -> str:
    """The Debian mirror this machine's apt already uses (the only one reachable)."""
    if sources is None:
        sources = (
            Path("/etc/apt/sources.list"),
            *sorted(Path("/etc/apt/sources.list.d").glob("*")),
        )
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        # deb822 format: URIs + Suites in one stanza.
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1).rstrip("/")
        # one-line format.
        for line in text.splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if match:
                return match.group(1).rstrip("/")
    return DEFAULT_MIRROR


def _run(argv: list[str], step: str, *, stdin: bytes | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-2000:]
        raise ImageBuildError(f"{step} failed (exit {proc.returncode}): {tail}")


def image_exists(tag: str) -> bool:
    proc = subprocess.run(["podman", "image", "exists", tag], capture_output=True, check=False)
    return proc.returncode == 0


def build_image(
    recipe: Recipe | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    log: bool = True,
) -> str:
    """Return the tag of the base image, building it first if its recipe is new."""
    recipe = recipe or Recipe()
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            raise ImageBuildError(
                t(
                    "'{tool}' is not installed; run 'make deps' (apt-get install podman "
                    "runc debootstrap)",
                    tool=tool,
                )
            )
    tag = recipe.tag
    if image_exists(tag) and not force:
        if log:
            print(tr(t("image {tag} is up to date (recipe unchanged)", tag=tag)), file=sys.stderr)
        _tag_latest(tag)
        return tag
    mirror = mirror or debian_mirror()
    if log:
        print(
            tr(t("building {tag} from {mirror} (debootstrap, ~2 min)", tag=tag, mirror=mirror)),
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="kastro-image-") as tmp:
        root = Path(tmp) / "root"
        _run(
            [
                "debootstrap",
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(root),
                mirror,
            ],
            "debootstrap",
        )
        _run(
            [
                "env",
                f"KASTRO_MIRROR={mirror}",
                "chroot",
                str(root),
                "/bin/sh",
                "-c",
                recipe.setup_script,
            ],
            "image setup script",
        )
        tar = subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."],
            capture_output=True,
            check=False,
        )
        if tar.returncode != 0:
            raise ImageBuildError(f"tar of the image root failed: {tar.stderr.decode()[-500:]}")
        _run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["/sbin/init"]',
                "--change",
                f"LABEL {RECIPE_LABEL}={recipe.digest()}",
                "--change",
                "STOPSIGNAL SIGRTMIN+3",
                "-",
                tag,
            ],
            "podman import",
            stdin=tar.stdout,
        )
    _tag_latest(tag)
    return tag


def _tag_latest(tag: str) -> None:
    # A stable name for Molecule and the lab; the hashed tag is the cache key.
    _run(["podman", "tag", tag, f"{IMAGE_NAME}:latest"], "podman tag")
