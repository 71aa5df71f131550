"""The monitor's configuration file (YAML): home networks and detector thresholds.

```yaml
home_networks: [10.20.0.0/16, fd4b:5354:2000::/48]
alerts: {suppress_seconds: 300, max_per_second: 50}
detectors:
  portscan: {vertical_ports: 20}
  beacon: {enabled: false}
```
Every key is checked; a wrong one is an error naming it and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitors.detectors import ALL
from monitors.detectors.base import (
    DEFAULT_HOME_NETWORKS,
    ConfigError,
    Detector,
    DetectorConfig,
    HomeNetworks,
)


@dataclass
class MonitorConfig:
    home_networks: tuple[str, ...] = DEFAULT_HOME_NETWORKS
    suppress_seconds: float = 300.0
    max_alerts_per_second: float = 50.0
    detectors: dict[str, DetectorConfig] = field(default_factory=dict)

    def build_detectors(self) -> list[Detector]:
        out = []
        for cls in ALL:
            cfg = self.detectors.get(cls.name) or cls.config_class()
            if cfg.enabled:
                out.append(cls(cfg, self.home_networks))
        return out


def load_config(path: Path | None) -> MonitorConfig:
    if path is None:
        return MonitorConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from exc
    return parse_config(raw)


def parse_config(raw: Any) -> MonitorConfig:
    if not isinstance(raw, dict):
        raise ConfigError(
            "the configuration must be a mapping with home_networks, alerts, detectors"
        )
    unknown = set(raw) - {"home_networks", "alerts", "detectors"}
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(sorted(unknown))}; "
            "known: home_networks, alerts, detectors"
        )
    config = MonitorConfig()
    if "home_networks" in raw:
        nets = raw["home_networks"]
        if not isinstance(nets, list) or not nets:
            raise ConfigError("home_networks: give a list of networks, e.g. [10.20.0.0/16]")
        HomeNetworks(tuple(str(n) for n in nets))  # validates
        config.home_networks = tuple(str(n) for n in nets)
    _alerts(raw.get("alerts") or {}, config)
    _detectors(raw.get("detectors") or {}, config)
    return config


def _alerts(alerts: Any, config: MonitorConfig) -> None:
    if not isinstance(alerts, dict):
        raise ConfigError(
            f"alerts: {alerts!r} must be a mapping, "
            "e.g. {suppress_seconds: 300, max_per_second: 50}"
        )
    unknown = set(alerts) - {"suppress_seconds", "max_per_second"}
    if unknown:
        raise ConfigError(
            f"alerts: unknown setting(s) {', '.join(sorted(map(str, unknown)))}; "
            "known: suppress_seconds, max_per_second"
        )
    for key, attr in (
        ("suppress_seconds", "suppress_seconds"),
        ("max_per_second", "max_alerts_per_second"),
    ):
        if key in alerts:
            value = alerts[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"alerts.{key}: {value!r} must be a positive number")
            setattr(config, attr, float(value))


def _detectors(detectors: Any, config: MonitorConfig) -> None:
    if not isinstance(detectors, dict):
        raise ConfigError("detectors: must map detector names to their settings")
    by_name = {cls.name: cls for cls in ALL}
    for name, settings in detectors.items():
        if name not in by_name:
            raise ConfigError(
                f"detectors.{name}: no such detector; known: {', '.join(sorted(by_name))}"
            )
        if not isinstance(settings, dict):
            raise ConfigError(f"detectors.{name}: must be a mapping of settings")
        config.detectors[name] = by_name[name].config_class.from_dict(name, settings)
