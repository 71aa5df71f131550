"""Helpers for writing nftables text, shared by the firewall and the links' QoS table."""

from __future__ import annotations

from collections.abc import Sequence


def nft_set(items: Sequence[str]) -> str:
    """One nftables value, or an anonymous set of several: 22 or { 22, 443 }."""
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"
