"""What the monitoring role writes, compiled on the controller: every file passes the real
tool of its daemon (promtool, amtool), the credentials are made once and kept, and values that
reach a command line or a certificate are checked first."""

from __future__ import annotations

import copy
import shutil
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kastro.controller.model_vars import model_variables
from kastro.controller.state import management_networks
from kastro.firewall.ruleset import compile_ruleset
from kastro.monitoring import credentials, deploy
from kastro.monitoring.credentials import CredentialsError
from kastro.monitoring.topology import MonitoringModelError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
SETTINGS = {
    "soc_email": "soc@dimos-kastrou.gr",
    "admin_email": "it@dimos-kastrou.gr",
    "smtp_from": "alertmanager@dimos-kastrou.gr",
    "smtp_smarthost": "mail.dimos-kastrou.gr:587",
    "building_contacts": {"school": "it@school.dimos-kastrou.gr"},
    "webhook_url": "",
    "retention": "30d",
}
needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool")
needs_amtool = pytest.mark.skipif(not shutil.which("amtool"), reason="needs amtool")


@pytest.fixture(scope="module")
def example() -> dict:
    return copy.deepcopy(model_variables(EXAMPLE))


@pytest.fixture
def made(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets" / "monitoring"
    credentials.ensure(directory, "dimos-kastrou.gr", "monitor", ["10.20.3.106"])
    return directory


def by_dest(entries: list[dict]) -> dict[str, dict]:
    return {e["dest"]: e for e in entries}


def write_out(entries: list[dict], root: Path) -> dict[str, Path]:
    """The files as the host would have them, under `root` (paths inside rewritten)."""
    written = {}
    for entry in entries:
        path = root / entry["dest"].lstrip("/")
        if entry.get("state") == "directory":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry["content"].replace("/etc/prometheus", str(root / "etc/prometheus")))
        written[entry["dest"]] = path
    return written


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


# --- credentials ------------------------------------------------------------------------------


def test_credentials_are_made_once_and_kept(tmp_path):
    directory = tmp_path / "m"
    first = credentials.ensure(directory, "dimos-kastrou.gr", "monitor", ["10.20.3.106"])
    assert first == {"changed": True, "made": ["ca", "monitor.crt", "web.password"]}
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    second = credentials.ensure(directory, "dimos-kastrou.gr", "monitor", ["10.20.3.106"])
    assert second == {"changed": False, "made": []}
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}


def test_a_new_address_gets_a_new_certificate_from_the_same_ca(made):
    ca = (made / "ca.crt").read_bytes()
    password = (made / "web.password").read_bytes()
    result = credentials.ensure(made, "dimos-kastrou.gr", "monitor", ["10.20.3.107"])
    assert result["made"] == ["monitor.crt"]
    assert (made / "ca.crt").read_bytes() == ca and (made / "web.password").read_bytes() == password
    cert = x509.load_pem_x509_certificate((made / "monitor.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.20.3.107"]


def test_the_certificate_verifies_against_the_ca_for_its_address(made):
    """The chain a client checks: Python's own TLS stack loads the pair and the CA."""
    context = ssl.create_default_context(cafile=str(made / "ca.crt"))
    context.load_cert_chain(made / "monitor.crt", made / "monitor.key")
    proc = run("openssl", "verify", "-CAfile", str(made / "ca.crt"), str(made / "monitor.crt"))
    assert proc.returncode == 0, proc.stderr


def test_a_damaged_password_file_is_made_again(made):
    (made / "web.bcrypt").write_text("not a hash\n")
    assert credentials.ensure(made, "dimos-kastrou.gr", "monitor", ["10.20.3.106"])["made"] == [
        "web.password"
    ]


@pytest.mark.parametrize(
    ("host", "addresses", "message"),
    [
        ("mon;rm -rf /", ["10.0.0.1"], "is not a host name"),
        ("monitor", ["10.0.0.1 -subj x"], "is not an IP address"),
        ("monitor", [], "no management address"),
    ],
)
def test_bad_names_are_refused_before_anything_is_written(tmp_path, host, addresses, message):
    with pytest.raises(CredentialsError, match=message):
        credentials.ensure(tmp_path / "m", "dimos-kastrou.gr", host, addresses)
    assert not (tmp_path / "m").exists()


# --- the files --------------------------------------------------------------------------------


@needs_promtool
def test_every_prometheus_file_passes_promtool(example, made, tmp_path):
    entries = deploy.files(example, "monitor", SETTINGS, (made / "web.bcrypt").read_text())
    written = write_out(entries, tmp_path)
    for dest in ("/etc/prometheus/kastro/rules/kastro.yml",
                 "/etc/prometheus/kastro/rules/kastro-topology.yml"):  # fmt: skip
        proc = run("promtool", "check", "rules", str(written[dest]))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # The full check: rules and target files found where prometheus.yml names them.
    proc = run("promtool", "check", "config", str(written["/etc/prometheus/prometheus.yml"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr
    tls = tmp_path / "etc/prometheus/kastro/tls"
    tls.mkdir(parents=True)
    shutil.copy(made / "monitor.crt", tls / "server.crt")
    shutil.copy(made / "monitor.key", tls / "server.key")
    proc = run("promtool", "check", "web-config", str(written["/etc/prometheus/web.yml"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_amtool
def test_alertmanager_file_passes_amtool(example, made, tmp_path):
    entries = deploy.files(example, "monitor", SETTINGS, (made / "web.bcrypt").read_text())
    written = write_out(entries, tmp_path)
    proc = run("amtool", "check-config", str(written["/etc/prometheus/alertmanager.yml"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " - 1 templates" in proc.stdout and "4 receivers" in proc.stdout


def test_prometheus_reaches_alertmanager_and_itself_over_tls_with_the_password(example):
    config = deploy.prometheus_config(example, "monitor")
    alertmanager = config["alerting"]["alertmanagers"][0]
    assert alertmanager["static_configs"] == [{"targets": ["10.20.3.106:9093"]}]
    assert alertmanager["scheme"] == "https"
    assert alertmanager["basic_auth"]["password_file"] == deploy.PASSWORD_FILE
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["10.20.3.106:9090"]
    assert jobs["prometheus"]["static_configs"][0]["labels"]["building"] == "cityhall"


def test_the_web_config_holds_the_hash_never_the_password(example, made):
    password = (made / "web.password").read_text().strip()
    entries = deploy.files(example, "monitor", SETTINGS, (made / "web.bcrypt").read_text())
    for entry in entries:
        assert password not in entry.get("content", "")
    web = yaml.safe_load(by_dest(entries)["/etc/prometheus/web.yml"]["content"])
    assert web["basic_auth_users"]["kastro"].startswith("$2b$")
    assert web["tls_server_config"]["min_version"] == "TLS12"
    assert by_dest(entries)["/etc/prometheus/web.yml"]["mode"] == "0640"


def test_the_daemons_listen_on_the_management_address_only(example):
    arguments = deploy.unit_arguments(example, "monitor", SETTINGS)
    assert "--web.listen-address=10.20.3.106:9090" in arguments["prometheus"]
    assert "--web.listen-address=10.20.3.106:9093" in arguments["alertmanager"]
    assert "--cluster.listen-address=" in arguments["alertmanager"].split()  # no gossip port
    assert "--web.listen-address=127.0.0.1:9115" in arguments["blackbox"]


def test_an_ipv6_management_address_is_bracketed():
    assert deploy.listen("fd4b:5354:2000:2::a", 9090) == "[fd4b:5354:2000:2::a]:9090"
    with pytest.raises(MonitoringModelError, match="management address"):
        deploy.listen("0.0.0.0", 9090)
    with pytest.raises(MonitoringModelError, match="not an IP address"):
        deploy.listen("10.0.0.1 --web.enable-admin-api", 9090)


@pytest.mark.parametrize("retention", ["30", "30d --web.enable-admin-api", "1h", ""])
def test_a_bad_retention_is_refused(example, retention):
    with pytest.raises(MonitoringModelError, match="monitoring_retention"):
        deploy.unit_arguments(example, "monitor", {**SETTINGS, "retention": retention or "x"})


def test_a_host_outside_the_plan_is_refused(example):
    with pytest.raises(MonitoringModelError, match="kastro apply"):
        deploy.unit_arguments(example, "nosuchhost", SETTINGS)


def test_only_the_monitoring_host_opens_its_web_ports_to_the_management_networks(example):
    """From the compiled rulesets: the monitoring host admits 9090/9093 from the management
    networks alone (input); no other host opens them."""
    settings = {"management_networks": management_networks(example)}
    rules = "\n".join(compile_ruleset("monitor", example, settings)["input"])
    web = [line for line in rules.splitlines() if "{ 9090, 9093 }" in line]
    assert len(web) == 2 and all("accept" in line for line in web)  # IPv4 and IPv6
    assert web[0].startswith("ip saddr { 10.20.3.96/27, 10.20.4.16/28,")
    for other in ("intranet", "sensor1", "fileserver"):
        assert "9093" not in "\n".join(compile_ruleset(other, example, settings)["input"])


def test_a_sensor_forwards_to_the_monitoring_hosts_alertmanager_with_checked_labels(example):
    endpoint = deploy.alertmanager_endpoint(example, "sensor1")
    assert endpoint == {
        "host": "monitor",
        "address": "10.20.3.106",
        "url": "https://10.20.3.106:9093",
        "labels": ["host=sensor1", "building=cityhall"],
    }


def test_without_a_monitoring_host_nothing_is_forwarded(example):
    municipality = {**example["kastro_municipality"], "monitoring_hosts": []}
    assert deploy.alertmanager_endpoint({**example, "kastro_municipality": municipality}, "x") == {}
