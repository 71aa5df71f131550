"""The monitor runs as an unprivileged service with only CAP_NET_RAW, and /metrics answers."""

import json
import time


def test_service_runs_as_its_own_user(host):
    service = host.service("kastro-monitor")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value kastro-monitor")
    assert host.check_output(f"ps -o user= -p {pid}") == "kastro-monitor"


def test_only_cap_net_raw(host):
    pid = host.check_output("systemctl show -p MainPID --value kastro-monitor")
    status = host.file(f"/proc/{pid}/status").content_string
    caps = {
        line.split(":")[0]: int(line.split()[1], 16)
        for line in status.splitlines()
        if line.startswith("Cap")
    }
    assert caps["CapEff"] == 1 << 13  # CAP_NET_RAW only
    assert caps["CapBnd"] == 1 << 13


def test_config_comes_from_the_inventory(host):
    config = host.file("/etc/kastro/monitor.yml")
    assert config.mode == 0o640 and config.group == "kastro-monitor"
    assert "10.88.0.0/16" in config.content_string
    assert "vertical_ports: 25" in config.content_string


def test_metrics_answer_and_count_real_packets(host):
    host.run("ping -c 3 -i 0.2 $(ip route | awk '/default/ {print $3}')")
    deadline = time.time() + 20
    body = ""
    while time.time() < deadline:
        body = host.run(
            'python3 -c "import urllib.request;print(urllib.request.urlopen('
            "'http://127.0.0.1:9550/metrics').read().decode())\""
        ).stdout
        if 'kastro_monitor_packets_total{protocol="ICMP"}' in body:
            break
        time.sleep(1)
    assert 'kastro_monitor_packets_total{protocol="ICMP"}' in body
    assert "kastro_monitor_capture_drops_total 0.0" in body


def test_eve_log_is_writable_by_the_service_only(host):
    logdir = host.file("/var/log/kastro")
    assert logdir.user == "kastro-monitor" and logdir.mode == 0o750
    eve = host.file("/var/log/kastro/eve.json")
    if eve.exists and eve.size:
        json.loads(eve.content_string.splitlines()[0])
