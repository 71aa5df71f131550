"""What the monitoring role writes on a monitoring host, compiled on the controller as data.

One list of files (destination, content, mode, the check that must pass before it replaces
the live one) for the role to hand to kastro_files in one step: Prometheus' configuration, its
target files and rules, Alertmanager's configuration and templates, blackbox_exporter's
modules, and the web configuration (TLS and basic auth) of Prometheus and Alertmanager. The
secrets themselves (certificate, key, password) are not here: the role copies them from the
controller's secrets directory first, without logging them, so the web configuration that
names them can be checked.

`variables` are the model's inventory variables (as kastro.controller.state takes them);
`settings` the monitoring role's variables without their prefix.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

import yaml

from kastro.inventory.plan import MONITORING_WEB_PORTS, management_address
from kastro.monitoring import alertmanager, prometheus, rules, targets
from kastro.monitoring.credentials import USER
from kastro.monitoring.topology import MonitoringModelError

ETC = "/etc/prometheus"
KASTRO = f"{ETC}/kastro"
TLS = f"{KASTRO}/tls"
PASSWORD_FILE = f"{KASTRO}/web.password"
CA_FILE = f"{TLS}/ca.crt"
PROMETHEUS_PORT, ALERTMANAGER_PORT = MONITORING_WEB_PORTS
GROUP = "prometheus"


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def listen(address: str, port: int) -> str:
    """ADDRESS:PORT for a --web.listen-address, IPv6 in brackets; the address checked."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise MonitoringModelError(
            f"the monitoring host's management address {address!r} is not an IP address; "
            "run 'kastro apply' again"
        ) from None
    if parsed.is_unspecified:
        raise MonitoringModelError("the monitoring host must listen on its management address")
    return f"[{parsed}]:{port}" if parsed.version == 6 else f"{parsed}:{port}"


def address(variables: Mapping[str, Any], host: str) -> str:
    """The monitoring host's management address (the one its certificate names)."""
    plan = variables.get("kastro_plan") or {}
    if host not in (plan.get("hosts") or {}):
        raise MonitoringModelError(
            f"{host} is not in the plan; add it to kastro_buildings and run 'kastro apply'"
        )
    return management_address(plan, host)


def alertmanager_endpoint(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """Where a sensor's forwarder sends its EVE alerts: the first monitoring host's
    Alertmanager (its name, address and URL) and the labels every alert of `host` carries.
    Empty without a monitoring host (the forwarder is not installed then)."""
    hosts = (variables.get("kastro_municipality") or {}).get("monitoring_hosts") or []
    if not hosts:
        return {}
    monitor = str(hosts[0])
    own = address(variables, monitor)
    labels = targets.host_labels(variables, host)
    return {
        "host": monitor,
        "address": own,
        "url": f"https://{listen(own, ALERTMANAGER_PORT)}",
        # Names the model has checked ([a-z0-9-]); the municipality's name may be Greek and is
        # Alertmanager's external label anyway.
        "labels": [f"{name}={labels[name]}" for name in ("host", "building") if labels[name]],
    }


def web_config(password_hash: str) -> dict[str, Any]:
    """--web.config.file of Prometheus and Alertmanager: TLS 1.2 or later, one user."""
    return {
        "tls_server_config": {
            "cert_file": f"{TLS}/server.crt",
            "key_file": f"{TLS}/server.key",
            "min_version": "TLS12",
        },
        "basic_auth_users": {USER: password_hash},
    }


def _auth() -> dict[str, Any]:
    return {
        "scheme": "https",
        "basic_auth": {"username": USER, "password_file": PASSWORD_FILE},
        "tls_config": {"ca_file": CA_FILE},
    }


def prometheus_config(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """prometheus.yml: the model's jobs, Alertmanager over TLS, and the two servers' own
    metrics (so a stopped Alertmanager is an alert too)."""
    own = address(variables, host)
    config = prometheus.config(variables, KASTRO, alertmanager=listen(own, ALERTMANAGER_PORT))
    config["alerting"]["alertmanagers"][0].update(_auth())
    labels = targets.host_labels(variables, host)
    for job, port in (("prometheus", PROMETHEUS_PORT), ("alertmanager", ALERTMANAGER_PORT)):
        config["scrape_configs"].append(
            {
                "job_name": job,
                **_auth(),
                "static_configs": [{"targets": [listen(own, port)], "labels": labels}],
            }
        )
    return config


# Answers that prove a web server serves: success, partial content, or asking for a login.
HTTP_VALID_STATUS = [200, 201, 202, 203, 204, 206, 401, 403]


def _http(tls: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "valid_status_codes": HTTP_VALID_STATUS,
        "preferred_ip_protocol": "ip4",
        "ip_protocol_fallback": True,
        "tls_config": {"insecure_skip_verify": True},
    }
    return {**settings, "fail_if_not_ssl": True} if tls else settings


def blackbox_config(variables: Mapping[str, Any]) -> dict[str, Any]:
    """blackbox_exporter's modules, named as kastro.monitoring.targets names them."""
    domain = str((variables.get("kastro_municipality") or {}).get("domain") or ".")
    return {
        "modules": {
            "icmp": {
                "prober": "icmp",
                "timeout": "5s",
                "icmp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": True},
            },
            "tcp_connect": {"prober": "tcp", "timeout": "5s"},
            # A web server answers: any success, or a login it asks for. Redirects are followed.
            # Municipal servers often carry certificates of their own CA, which the monitoring
            # host does not hold: the probe checks that the service answers, and the rule
            # KastroCertificateExpiring reads the certificate's end date from it.
            "http": {"prober": "http", "timeout": "5s", "http": _http(tls=False)},
            "https": {"prober": "http", "timeout": "5s", "http": _http(tls=True)},
            "dns": {
                "prober": "dns",
                "timeout": "5s",
                # An answer of any kind proves the resolver runs; what it resolves is its own.
                "dns": {
                    "query_name": domain,
                    "query_type": "SOA",
                    "valid_rcodes": ["NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL"],
                },
            },
        }
    }


def _file(dest: str, content: str, validate: str = "", mode: str = "0640") -> dict[str, Any]:
    entry: dict[str, Any] = {"dest": dest, "content": content, "mode": mode, "group": GROUP}
    if validate:
        entry["validate"] = validate
    return entry


def _directory(dest: str, mode: str = "0750") -> dict[str, Any]:
    return {"dest": dest, "state": "directory", "mode": mode, "group": GROUP}


def files(
    variables: Mapping[str, Any], host: str, settings: Mapping[str, Any], password_hash: str
) -> list[dict[str, Any]]:
    """Every configuration file of the monitoring host, as kastro_files entries."""
    entries = [_directory(KASTRO), _directory(f"{KASTRO}/rules"), _directory(f"{KASTRO}/targets")]
    entries += [
        _directory(f"{KASTRO}/templates"),
        _file(
            f"{KASTRO}/templates/kastro.tmpl",
            alertmanager.TEMPLATE.read_text(encoding="utf-8"),
        ),
    ]
    for name, groups in sorted(prometheus.target_files(variables).items()):
        entries.append(_file(f"{KASTRO}/targets/{name}", json.dumps(groups, indent=1) + "\n"))
    entries += [
        _file(
            f"{KASTRO}/rules/kastro.yml",
            _yaml(rules.static_rules()),
            "promtool check rules %s",
        ),
        _file(
            f"{KASTRO}/rules/kastro-topology.yml",
            _yaml(rules.topology_rules(variables)),
            "promtool check rules %s",
        ),
        _file(f"{ETC}/web.yml", _yaml(web_config(password_hash)), "promtool check web-config %s"),
        _file(
            f"{ETC}/prometheus.yml",
            _yaml(prometheus_config(variables, host)),
            "promtool check config --syntax-only %s",
        ),
        _file(
            f"{ETC}/alertmanager.yml",
            _yaml(alertmanager.config(settings, f"{KASTRO}/templates")),
            "amtool check-config %s",
        ),
        _file(
            f"{ETC}/blackbox.yml",
            _yaml(blackbox_config(variables)),
            "prometheus-blackbox-exporter --config.check --config.file=%s",
        ),
    ]
    return entries


def unit_arguments(
    variables: Mapping[str, Any], host: str, settings: Mapping[str, Any]
) -> dict[str, str]:
    """The command-line flags of the three daemons (values checked here, not in Jinja)."""
    own = address(variables, host)
    retention = str(settings.get("retention") or "30d")
    if not retention[:-1].isdigit() or retention[-1] not in "dwy":
        raise MonitoringModelError(
            f"monitoring_retention {retention!r} is not a duration in days, weeks or years; "
            "e.g. 30d"
        )
    prom, am = listen(own, PROMETHEUS_PORT), listen(own, ALERTMANAGER_PORT)
    return {
        "prometheus": " ".join(
            [
                f"--config.file={ETC}/prometheus.yml",
                f"--web.config.file={ETC}/web.yml",
                f"--web.listen-address={prom}",
                f"--web.external-url=https://{prom}/",
                "--storage.tsdb.path=/var/lib/prometheus/metrics2",
                f"--storage.tsdb.retention.time={retention}",
            ]
        ),
        "alertmanager": " ".join(
            [
                f"--config.file={ETC}/alertmanager.yml",
                f"--web.config.file={ETC}/web.yml",
                f"--web.listen-address={am}",
                f"--web.external-url=https://{am}/",
                "--storage.path=/var/lib/prometheus/alertmanager",
                "--cluster.listen-address=",
            ]
        ),
        "blackbox": " ".join(
            [f"--config.file={ETC}/blackbox.yml", f"--web.listen-address={prometheus.BLACKBOX}"]
        ),
        "address": own,
        "prometheus_listen": prom,
        "alertmanager_listen": am,
    }
