"""What every detector offers the engine."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from monitors.alerts import Alert
from monitors.batch import Bools, Columns, Ints
from monitors.packet import Packet
from monitors.state import BoundedTable

Emit = Callable[[Alert], None]

DEFAULT_HOME_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


class ConfigError(ValueError):
    """A detector setting is wrong; the message names the setting and the fix."""


@dataclass
class DetectorConfig:
    """Thresholds of one detector; subclasses add theirs. ``enabled`` turns it off."""

    enabled: bool = True
    max_tracked: int = 100_000  # hard cap of the detector's state table

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> DetectorConfig:
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(
                    f"detectors.{name}.{key}: unknown setting; known: {', '.join(sorted(known))}"
                )
            default = getattr(cls(), key)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, (int, float)):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                # A table cap of 0 could hold nothing: the first packet would have no state.
                ok = ok and (key != "max_tracked" or value >= 1)
            elif isinstance(default, tuple):
                ok = isinstance(value, list) and all(_element_ok(known[key], v) for v in value)
                value = tuple(value) if ok else value
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ConfigError(
                    f"detectors.{name}.{key}: {value!r} is not valid; "
                    f"expected a value like {default!r}"
                    + (" (at least 1)" if key == "max_tracked" else "")
                )
            values[key] = value
        config = cls(**values)
        config.check(name)
        return config

    def check(self, name: str) -> None:
        """Cross-field and syntax checks a subclass adds; raises ConfigError naming the key."""


def _element_ok(field: Any, value: Any) -> bool:
    """An item of a list setting: a port (0-65535) where the field holds ints, else a string."""
    if "int" in str(field.type):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535
    return isinstance(value, str)


class Detector:
    """Base class: ``observe`` each relevant packet, ``emit`` alerts, keep state bounded."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    # Which packets the engine hands over: tcp_syn (SYN set, or no ACK: handshakes and
    # probes), tcp_ack (a bare ACK without data), tcp (the rest of TCP), udp, icmp, fragment
    # (a non-first IP fragment, which has no transport header), arp, ip (every IP packet).
    # Established TCP traffic, most of any network, thus reaches
    # only the detectors that need it.
    wants: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        config: DetectorConfig | None = None,
        home_networks: tuple[str, ...] = DEFAULT_HOME_NETWORKS,
    ) -> None:
        self.config = config or self.config_class()
        self.table: BoundedTable[Any, Any] = BoundedTable(self.config.max_tracked)
        self.home = HomeNetworks(home_networks)

    def observe(self, pkt: Packet, emit: Emit) -> None:
        raise NotImplementedError

    def expire(self, now: float) -> None:
        """Drop state that has aged out (called every few seconds of traffic time)."""

    def batch_mask(self, kind: str, cols: Columns) -> Bools | None:
        """Of a batch's plain TCP segments of `kind` (tcp or tcp_ack, read as arrays by
        monitors.batch), the rows this detector may act on; None: all of them. A mask may
        keep rows the detector will ignore, never drop one it would act on: dropped rows
        never reach :meth:`observe`."""
        return None

    def flow_alert(
        self,
        pkt: Packet,
        signature_id: int,
        signature: str,
        category: str,
        severity: int,
        evidence: dict[str, Any],
        dedup: tuple[bytes, bytes] | None = None,
    ) -> Alert:
        """An alert about the packet's own flow (its addresses, protocol and ports)."""
        return Alert(
            detector=self.name,
            signature_id=signature_id,
            signature=signature,
            category=category,
            severity=severity,
            ts=pkt.ts,
            src=pkt.src,
            dst=pkt.dst,
            proto=pkt.proto,
            sport=pkt.sport,
            dport=pkt.dport,
            evidence=evidence,
            dedup=dedup,
        )

    @property
    def tracked(self) -> int:
        return len(self.table)

    @property
    def evictions(self) -> int:
        return self.table.evictions


class HomeNetworks:
    """Fast membership test for the municipality's own address space."""

    def __init__(self, cidrs: tuple[str, ...]) -> None:
        self.v4: list[tuple[int, int]] = []
        self.v6: list[tuple[int, int]] = []
        for cidr in cidrs:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ConfigError(
                    f"home_networks: '{cidr}' is not a network (e.g. 10.20.0.0/16)"
                ) from exc
            target = self.v4 if net.version == 4 else self.v6
            target.append((int(net.network_address), int(net.netmask)))

        self._cache: dict[bytes, bool] = {}

    def v4_mask(self, addresses: Ints) -> Bools:
        """Which IPv4 addresses (as integers) are home addresses."""
        inside = np.zeros(len(addresses), dtype=np.bool_)
        for base, mask in self.v4:
            inside |= (addresses & mask) == base
        return inside

    def __contains__(self, raw: bytes) -> bool:
        # Every packet asks this twice; a small cache makes it one dict lookup. It is cleared
        # when full, so a flood of random addresses cannot grow it.
        cached = self._cache.get(raw)
        if cached is not None:
            return cached
        value = int.from_bytes(raw, "big")
        nets = self.v4 if len(raw) == 4 else self.v6
        result = any(value & mask == base for base, mask in nets)
        if len(self._cache) >= 65_536:
            self._cache.clear()
        self._cache[raw] = result
        return result
