"""The local lab: containers, a QEMU VM and the tools that measure them (tests and demo only)."""

from __future__ import annotations

import os
from pathlib import Path

# podman settings every lab host needs on these machines (runc, cgroupfs, capped ulimits; see
# containers.conf): used unless the caller chose a file of its own.
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")


def use_podman_settings() -> None:
    """Make every podman this process starts (directly or through a child) read Kastro's
    settings, so `kastro lab ...` works as typed, without the Makefile's environment."""
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
