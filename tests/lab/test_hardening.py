"""Security review findings tested on real hosts (the lab-small municipality, site.yml
converged once for every lab test): commit-confirm gaps (6), exporters' privileges, listeners
and reachability from the attacker's side (9). Finding 4 (become) is in the firewall-lockout
Molecule scenario; 7 from the attacker's side in tests/unit/test_security_review.py.

The module's name sorts before test_lab_network.py, whose last test removes the shared lab."""

import json
import re
import time

import pytest
import testinfra

from kastro.lab import hosts
from tests.lab.conftest import LAB

pytestmark = pytest.mark.lab

CANDIDATE = "/etc/kastro/firewall/candidate.nft"
# Every exporter Kastro runs in this lab: (host, collector unit or None, server unit, port).
EXPORTERS = [
    ("hall-gw", "kastro-firewall-metrics", "kastro-firewall-exporter", 9552),
    ("hall-gw", "kastro-links-metrics", "kastro-links-exporter", 9554),
    ("annex-gw", "kastro-links-metrics", "kastro-links-exporter", 9554),
    ("web", "kastro-firewall-metrics", "kastro-firewall-exporter", 9552),
    ("probe", "kastro-firewall-metrics", "kastro-firewall-exporter", 9552),
    ("probe", None, "kastro-monitor", 9550),
    *(
        (name, None, "prometheus-node-exporter", 9100)
        for name in ("hall-gw", "annex-gw", "web", "probe")
    ),
]
MAX_EXPOSURE = 4.0  # systemd-analyze security's "OK" band


def ssh(name: str):
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(hosts.state_dir(LAB) / "ssh_config"))


def exposure(host, unit: str) -> float:
    out = host.check_output(f"systemd-analyze security --no-pager {unit}.service")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out[-500:]
    return float(match.group(1))


def listener(host, port: int) -> str:
    rows = host.check_output(f"ss -Hltn 'sport = :{port}'").splitlines()
    assert len(rows) == 1, rows
    return rows[0].split()[3]


# --- 9. least privilege, management address only, monitoring hosts only -------------------


@pytest.mark.parametrize(("name", "collector", "server", "port"), EXPORTERS)
def test_9_every_exporter_is_least_privilege(lab, name, collector, server, port):
    host = ssh(name)
    scores = {}
    for unit in filter(None, (collector, server)):
        assert host.service(unit).is_running, unit
        scores[unit] = exposure(host, unit)
    print(f"\n{name}: systemd-analyze security {scores}")
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores
    if collector:  # the listening half holds no capability at all
        caps = host.check_output(f"systemctl show -p CapabilityBoundingSet --value {server}")
        assert caps.strip() == "", caps
        families = host.check_output(
            f"systemctl show -p RestrictAddressFamilies --value {collector}"
        )
        assert "AF_INET " not in f"{families} " or collector == "kastro-links-metrics"
    user = host.check_output(f"systemctl show -p DynamicUser,User --value {server}").split()
    assert user[0] == "yes" or (len(user) > 1 and user[1] not in ("root", "0")), user


@pytest.mark.parametrize(("name", "collector", "server", "port"), EXPORTERS)
def test_9_exporters_listen_on_the_management_address_only(lab, name, collector, server, port):
    address = listener(ssh(name), port)
    assert not address.startswith(("0.0.0.0", "*", "[::]", "127.")), address


def fetch(source: str, address: str) -> bool:
    """Whether `source` gets an HTTP answer from http://ADDRESS/metrics within 3 s."""
    proc = ssh(source).run(
        'python3 -c "import urllib.request,sys; '
        f"urllib.request.urlopen('http://{address}/metrics', timeout=3); sys.exit(0)\""
    )
    return proc.rc == 0


def test_9_only_the_monitoring_host_can_scrape(lab):
    """web is kastro_municipality.monitoring_hosts; probe sits in the management zone itself,
    the attacker on the internet. Only web gets an answer, from every exporter."""
    for name, _, _, port in EXPORTERS:
        address = listener(ssh(name), port)
        if name != "web":
            assert fetch("web", address), f"web cannot scrape {name} {address}"
        if name != "probe":
            assert not fetch("probe", address), f"probe scraped {name} {address}"
        assert not fetch("attacker", address), f"the attacker scraped {name} {address}"


def scrape(source: str, address: str) -> str:
    return ssh(source).check_output(
        'python3 -c "import urllib.request; '
        f"print(urllib.request.urlopen('http://{address}/metrics', timeout=5).read().decode())\""
    )


def test_9_the_confined_collectors_still_see_what_they_report(lab):
    """Least privilege must not cost the metrics: under their sandboxes the collectors still
    read the ruleset (CAP_NET_ADMIN), ping the far end (CAP_NET_RAW) and ask FRR (vtysh)."""
    deadline = time.monotonic() + 60
    while True:
        links = scrape("web", listener(ssh("hall-gw"), 9554))
        firewall = scrape("web", listener(ssh("hall-gw"), 9552))
        ready = 'kastro_ospf_up{family="ipv4"} 1.0' in links and re.search(
            r'kastro_link_up\{[^}]*link="hall-annex"[^}]*\} 1\.0', links
        )
        if ready or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert 'kastro_ospf_up{family="ipv4"} 1.0' in links, links
    assert re.search(r'kastro_ospf_neighbor_full\{[^}]*link="hall-annex"[^}]*\} 1\.0', links)
    assert re.search(r'kastro_link_up\{[^}]*link="hall-annex"[^}]*\} 1\.0', links), links
    assert "kastro_firewall_up 1.0" in firewall
    assert re.search(
        r'kastro_firewall_packets_total\{[^}]*counter="metrics_in"[^}]*\} [1-9]', firewall
    )


def test_9_the_telework_and_links_collectors_cannot_read_keys(lab):
    host = ssh("hall-gw")
    unit = host.check_output("systemctl show -p InaccessiblePaths --value kastro-links-metrics")
    assert "/etc/kastro/links" in unit and "/etc/frr/frr.conf" in unit
    pid = host.check_output("systemctl show -p MainPID --value kastro-links-metrics")
    proc = host.run(f"nsenter -t {pid} -m cat /etc/frr/frr.conf")
    assert proc.rc != 0  # hidden in the collector's own view of the file system


# --- 6. commit-confirm ----------------------------------------------------------------------


def test_6a_a_failed_apply_after_an_unconfirmed_one_keeps_the_timer(lab):
    """An unconfirmed change is live; a second apply fails while loading. Before the fix the
    timer had been disarmed first and never re-armed: an unconfirmed ruleset without a
    rollback. Now the timer is armed before the load and re-armed whatever happens."""
    host = ssh("hall-gw")
    host.check_output("kastro-firewall block 203.0.113.77 --timeout 1h")
    broken = "/root/fails-at-load.nft"
    # nft -c accepts it, but the load fails: the carried-over blocklist entry has a timeout
    # and this set no longer has the timeout flag.
    host.check_output(
        f"sed '/set blocklist_v4/,/}}/ s/flags interval, timeout/flags interval/' {CANDIDATE}"
        f" > {broken}"
    )
    try:
        host.check_output(f"kastro-firewall apply {CANDIDATE} --rollback-after 300")
        failed = host.run(f"kastro-firewall apply {broken} --rollback-after 300")
        assert failed.rc == 1, failed.stdout + failed.stderr
        assert host.run("systemctl is-active kastro-firewall-rollback.timer").stdout.strip() == (
            "active"
        )
        assert json.loads(host.check_output("kastro-firewall status"))["pending"] is not None
    finally:
        host.run("kastro-firewall rollback")
        host.run("kastro-firewall unblock 203.0.113.77")
    status = json.loads(host.check_output("kastro-firewall status"))
    assert status["pending"] is None
    assert not json.loads(host.check_output(f"kastro-firewall needs-apply {CANDIDATE}"))[
        "needs_apply"
    ]


def test_6b_a_late_confirm_fails(lab):
    host = ssh("hall-gw")
    late = host.run("kastro-firewall confirm --sha256 " + "0" * 64)
    assert late.rc == 1 and "nothing is pending" in late.stderr


def test_6c_a_hand_edit_of_the_live_table_is_repaired_on_the_next_run(lab):
    host = ssh("hall-gw")
    assert not json.loads(host.check_output(f"kastro-firewall needs-apply {CANDIDATE}"))[
        "needs_apply"
    ]
    rules = host.check_output("nft list chain inet kastro forward").count("\n")
    host.check_output("nft flush chain inet kastro forward")
    verdict = json.loads(host.check_output(f"kastro-firewall needs-apply {CANDIDATE}"))
    assert verdict["needs_apply"], verdict
    assert "changed by hand" in " ".join(verdict["reasons"])
    # What the role does when needs-apply says so: apply, then confirm that exact file.
    digest = host.check_output(f"sha256sum {CANDIDATE}").split()[0]
    host.check_output(f"kastro-firewall apply {CANDIDATE} --rollback-after 60")
    host.check_output(f"kastro-firewall confirm --sha256 {digest}")
    assert host.check_output("nft list chain inet kastro forward").count("\n") == rules
    assert not json.loads(host.check_output(f"kastro-firewall needs-apply {CANDIDATE}"))[
        "needs_apply"
    ]
