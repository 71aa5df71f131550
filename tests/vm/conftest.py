"""One Debian 12 VM under QEMU for every kernel-level test of a pytest session (booting one
takes a minute or more under emulation: share it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kastro.lab import vm

ROOT = Path(__file__).resolve().parents[2]
NAME = "kernel-checks"


@pytest.fixture(scope="session")
def machine() -> Iterator[vm.Machine]:
    image = vm.build(ROOT / vm.STATE)
    # 3 GiB: oscap's ANSSI scan of the whole datastream needs more than 1 GiB beside auditd and
    # AIDE (its results file ended mid-way once at 1 GiB, and at 2 GiB with Lynis beside it).
    running = vm.up(NAME, image, ROOT / vm.STATE, memory_mb=3072)
    yield running
    vm.down(NAME, ROOT / vm.STATE)
