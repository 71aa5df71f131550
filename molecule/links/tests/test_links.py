"""Links between buildings with real tunnels, real OSPF and real queues.

The lab (molecule/_lab/ring): hall - kep - lib - deya - hall is a ring, school hangs off lib.
kep-lib, deya-hall and lib-school are encrypted (radio, leased), the others plain fibre. Each
building has one LAN host. Measured figures are printed (the verifier runs pytest with -s).
All traffic stays inside the lab's own networks.
"""

import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

# Every test takes the `host` fixture, so pytest keeps this file's order (they build on each other).
testinfra_hosts = ["hall-gw"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[3]))
LAB = os.environ.get("KASTRO_LAB", "mol-links")
MUNICIPALITY = Path(os.environ["KASTRO_LAB_INVENTORY"])
SSH_CONFIG = PROJECT / ".kastro" / "lab" / LAB / "ssh_config"
PLAN = yaml.safe_load((MUNICIPALITY / "group_vars" / "all" / "kastro_plan.yml").read_text())[
    "kastro_plan"
]
GATEWAYS = sorted(PLAN["router_ids"])
LAN_HOSTS = {h: v for h, v in PLAN["hosts"].items() if v["role"] != "gateway"}
PROBE = (Path(__file__).parent / "probe.py").read_text()
# OSPF timers the role sets (roles/links/defaults/main.yml) and what failover may take:
# the dead interval, the SPF delay, one hello of jitter (FRR starts the dead timer at the last
# hello heard) and a second for the new route to reach the kernel and the tunnel handshake.
HELLO, DEAD, SPF_DELAY = 1.0, 3.0, 0.05
FAILOVER_BOUND = DEAD + SPF_DELAY + HELLO + 1.0


def failures(output: str) -> str:
    """The failed tasks of a verbose ansible-playbook run (each with what follows it), then
    the recap: the end of the output alone is mostly successful tasks."""
    lines = output.splitlines()
    found = [
        "\n".join(lines[max(i - 2, 0) : i + 25])
        for i, line in enumerate(lines)
        if line.startswith(("fatal:", "failed:")) or "FAILED!" in line
    ]
    return "\n---\n".join(found)[-6000:] + "\n" + output[output.rfind("PLAY RECAP") :]


def on(host: str, command: str, timeout: float = 60, stdin: str | None = None):
    return subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), host, command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def config(gateway: str) -> dict:
    return json.loads(on(gateway, "cat /etc/kastro/links.json").stdout)


def link_of(gateway: str, name: str) -> dict:
    return next(link for link in config(gateway)["links"] if link["name"] == name)


def full_neighbors(gateway: str, family: str) -> set[str]:
    rows = json.loads(on(gateway, f"kastro-links neighbors --family {family}").stdout or "[]")
    return {r["interface"] for r in rows or [] if r["state"] == "Full"}


def wait_full(family: str = "ipv4", timeout: float = 40) -> dict[str, set[str]]:
    """Each gateway -> interfaces with a Full adjacency, once all links are Full (or timeout)."""
    wanted = {g: {link["interface"] for link in config(g)["links"]} for g in GATEWAYS}
    deadline = time.monotonic() + timeout
    while True:
        got = {g: full_neighbors(g, family) for g in GATEWAYS}
        if got == wanted or time.monotonic() > deadline:
            return got
        time.sleep(1)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])  # OSPFv2 and OSPFv3
def test_every_link_has_a_full_adjacency(host, family):
    wanted = {g: {link["interface"] for link in config(g)["links"]} for g in GATEWAYS}
    # Five links, two ends each.
    assert sum(len(v) for v in wanted.values()) == 2 * len(PLAN["links"]) == 10
    assert wait_full(family) == wanted


def test_routes_follow_the_costs(host):
    # lib reaches deya's LAN over the fibre (cost 100), not round the ring over the radio.
    deya_lan = LAN_HOSTS["pc-deya"]["ipv4"]
    route = on("lib-gw", f"ip route get {deya_lan}").stdout
    assert f"dev {link_of('lib-gw', 'lib-deya')['interface']}" in route, route
    # The encrypted links route over their tunnels, never over the underlay.
    route = on("lib-gw", f"ip route get {LAN_HOSTS['pc-school']['ipv4']}").stdout
    assert "dev wl-school" in route, route


def reachable(source: str, targets: list[str]) -> dict[str, bool]:
    script = "; ".join(
        f"ping -n -c 2 -i 0.2 -W 1 {ip} >/dev/null 2>&1 && echo {ip} yes || echo {ip} no"
        for ip in targets
    )
    out = on(source, script, timeout=120).stdout
    return {line.split()[0]: line.split()[1] == "yes" for line in out.splitlines()}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_lan_hosts_reach_each_other_as_the_policy_allows(host, family):
    # Policy (molecule/_lab/ring): staff -> staff and staff -> hall.servers may ping;
    # nothing may start from the servers towards staff.
    results = {}
    for source in sorted(LAN_HOSTS):
        others = {h: v[family] for h, v in LAN_HOSTS.items() if h != source}
        got = reachable(source, list(others.values()))
        for target, ip in others.items():
            results[(source, target)] = got.get(ip)
    expected = {(s, t): LAN_HOSTS[s]["zone"].endswith(".staff") for (s, t) in results}
    assert results == expected
    allowed = sum(expected.values())
    print(
        f"\nreachability ({family}): {allowed} allowed pairs answer, "
        f"{len(expected) - allowed} denied pairs do not"
    )
    assert allowed == 16  # 4 staff hosts x 4 others


def capture(gateway: str, interface: str, source: str, ping: str, pattern: str) -> str:
    """Ping with a recognisable payload while capturing on a gateway's interface."""
    on(
        gateway,
        f"rm -f /tmp/cap.pcap; timeout 8 tcpdump -i {interface} -U -n -w /tmp/cap.pcap "
        ">/dev/null 2>&1 & sleep 1.5",
    )
    out = on(source, f"ping -n -c 5 -i 0.2 -p {pattern} -s 200 {ping}").stdout
    assert " 0% packet loss" in out, out
    time.sleep(1)
    on(gateway, "pkill -INT tcpdump; sleep 0.5")
    return on(gateway, "tcpdump -r /tmp/cap.pcap -n -X 2>/dev/null").stdout


def test_encrypted_link_carries_only_wireguard(host):
    pattern = "c0ffee15deadbeef"
    link = link_of("kep-gw", "kep-lib")
    seen = capture("kep-gw", link["underlay"], "pc-kep", LAN_HOSTS["pc-lib"]["ipv4"], pattern)
    packets = [line for line in seen.splitlines() if re.match(r"^\d\d:\d\d", line)]
    assert len(packets) >= 10, seen[:2000]
    port = link["wireguard"]["port"]
    for line in packets:
        if "ARP," in line or "fe80::" in line:  # the underlay's own neighbour discovery
            continue
        assert re.search(rf"169\.254\.\d+\.\d+\.{port} > 169\.254\.\d+\.\d+\.{port}: UDP", line), (
            line
        )
    hexdump = seen.replace(" ", "")
    assert "ICMP echo" not in seen and pattern not in hexdump
    # Control: the same capture on a plain fibre link does show the pings and their payload.
    plain = link_of("lib-gw", "lib-deya")
    seen = capture("lib-gw", plain["underlay"], "pc-lib", LAN_HOSTS["pc-deya"]["ipv4"], pattern)
    assert "ICMP echo request" in seen and pattern in seen.replace(" ", "")
    print(
        f"\nunderlay of kep-lib: {len(packets)} packets, all WireGuard (UDP {port}), "
        "payload never in clear"
    )


def test_link_health_metrics(host, tmp_path):
    time.sleep(11)  # one probe round, then the collector's next write
    address = on("lib-gw", "ss -Hltn 'sport = :9554'").stdout.split()[3]
    assert not address.startswith(("0.0.0.0", "*", "[::]")), address  # management address only
    text = on(
        "lib-gw",
        'python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://{address}/metrics').read().decode())\"",
    ).stdout
    (tmp_path / "metrics.txt").write_text(text)
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("kep-lib", "lib-deya", "lib-school"):
        full = re.findall(rf'kastro_ospf_neighbor_full\{{([^}}]*link="{name}"[^}}]*)\}} 1\.0', text)
        assert len(full) == 2, name  # OSPFv2 and OSPFv3
        assert re.search(rf'kastro_link_up\{{[^}}]*link="{name}"[^}}]*\}} 1\.0', text), name
        rtt = re.search(rf'kastro_link_rtt_seconds\{{[^}}]*link="{name}"[^}}]*\}} (\S+)', text)
        assert rtt and 0 < float(rtt.group(1)) < 0.5, text
    assert re.search(r'kastro_link_transmit_bytes_total\{[^}]*link="lib-school"[^}]*\} [1-9]', text)
    assert re.search(
        r'kastro_link_qos_sent_bytes_total\{class="voip"[^}]*link="lib-school"[^}]*\} [1-9]', text
    )


@pytest.fixture(scope="module")
def echo_servers():
    for lan in ("pc-school", "pc-lib"):
        on(lan, "cat > /root/probe.py", stdin=PROBE)
    on(
        "pc-school",
        "systemctl stop lab-echo-rtp lab-echo-bulk lab-iperf 2>/dev/null; "
        "systemd-run --unit=lab-echo-rtp python3 /root/probe.py serve 16384; "
        "systemd-run --unit=lab-echo-bulk python3 /root/probe.py serve 9102; sleep 1",
    )
    yield
    on("pc-school", "systemctl stop lab-echo-rtp lab-echo-bulk lab-iperf; true")


def probe(kind: str, port: int, count: int, gap: float) -> dict:
    school = LAN_HOSTS["pc-school"]["ipv4"]
    out = on("pc-lib", f"python3 /root/probe.py {kind} {school} {port} {count} {gap}", timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def voip_class_packets() -> int:
    """Packets sent so far by the voip class (1:10) of lib-gw's tunnel to the school."""
    out = on("lib-gw", "tc -s class show dev wl-school classid 1:10").stdout
    match = re.search(r"Sent \d+ bytes (\d+) pkt", out)
    assert match, out
    return int(match.group(1))


def test_voip_keeps_its_latency_when_bulk_traffic_fills_the_link(host, echo_servers):
    link = link_of("lib-gw", "lib-school")
    shaped_mbit = link["shaped_rate_kbit"] / 1000
    idle = probe("udp", 16384, 100, 0.02)
    before = voip_class_packets()
    # Four bulk streams (rsync's port: marked cs1) from pc-lib to pc-school for 12 s.
    on("pc-school", "systemd-run --unit=lab-iperf iperf3 -s -p 873 -1; sleep 1")
    on(
        "pc-lib",
        f"rm -f /tmp/iperf.json; (iperf3 -c {LAN_HOSTS['pc-school']['ipv4']} -p 873 -P 4 -t 12 "
        "-J > /tmp/iperf.json 2>&1 &)",
    )
    time.sleep(3)
    voip = probe("udp", 16384, 200, 0.02)  # 50 packets/s, G.711-sized: 4 s
    bulk = probe("tcp", 9102, 40, 0.05)  # the same path in the bulk class
    time.sleep(8)
    result = json.loads(on("pc-lib", "cat /tmp/iperf.json").stdout)
    bulk_mbit = result["end"]["sum_received"]["bits_per_second"] / 1e6
    classified = voip_class_packets() - before
    print(
        f"\nQoS on lib-school (20 Mbit/s radio, shaped to {shaped_mbit:.1f} Mbit/s "
        "inside WireGuard):"
        f"\n  bulk iperf3 (4 TCP streams, cs1): {bulk_mbit:.1f} Mbit/s"
        f"\n  VoIP stream (EF) idle:  loss {idle['sent'] - idle['received']}/{idle['sent']}, "
        f"p50 {idle['p50_ms']} ms, p95 {idle['p95_ms']} ms"
        f"\n  VoIP stream (EF) saturated: loss {voip['sent'] - voip['received']}/{voip['sent']}, "
        f"p50 {voip['p50_ms']} ms, p95 {voip['p95_ms']} ms, max {voip['max_ms']} ms"
        f"\n  bulk-class probe saturated: p50 {bulk['p50_ms']} ms, p95 {bulk['p95_ms']} ms"
        f"\n  packets in the voip class during the test: {classified}"
    )
    # The link really was full: bulk got (close to) the shaped rate and its queue filled.
    assert 0.7 * shaped_mbit <= bulk_mbit <= 1.05 * shaped_mbit
    assert bulk["p50_ms"] >= 20
    # VoIP was marked at the edge and went through its own class, unharmed.
    assert classified >= 200
    assert voip["received"] >= 0.99 * voip["sent"]
    assert voip["p95_ms"] <= idle["p95_ms"] + 10
    assert voip["p50_ms"] * 5 <= bulk["p50_ms"]


def outage_seconds(ping_output: str, interval: float) -> float:
    """Longest run of unanswered pings, in seconds (ping -O prints each sequence number)."""
    answered = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+) ttl", ping_output)})
    assert answered, ping_output[-500:]
    gaps = [b - a - 1 for a, b in itertools.pairwise(answered)]
    return max(gaps, default=0) * interval


def silence_and_ping(underlay: str, target: str, hooks: tuple[str, str]) -> tuple[float, str]:
    """pc-kep pings `target` 20 times a second for 16 s; 3 s in, kep-gw drops everything on
    `underlay` in both directions at the given (input, output) hooks, so neither end sees the
    interface go down. The longest gap in the answers, and kep-gw's route to `target` then."""
    interval = 0.05
    on(
        "pc-kep",
        f"rm -f /tmp/ping.txt; (ping -n -O -i {interval} -w 16 {target} > /tmp/ping.txt 2>&1 &)",
    )
    time.sleep(3)
    cut = (
        "nft add table inet labcut; "
        f"nft add chain inet labcut in '{{ type filter hook {hooks[0]}; }}'; "
        f"nft add chain inet labcut out '{{ type filter hook {hooks[1]}; }}'; "
        f"nft add rule inet labcut in iifname {underlay} drop; "
        f"nft add rule inet labcut out oifname {underlay} drop"
    )
    assert on("kep-gw", cut).returncode == 0
    time.sleep(14)
    outage = outage_seconds(on("pc-kep", "cat /tmp/ping.txt").stdout, interval)
    detour = on("kep-gw", f"ip route get {target}").stdout
    on("kep-gw", "nft delete table inet labcut")
    return outage, detour


def test_traffic_takes_the_other_way_when_a_ring_link_fails(host):
    assert wait_full() == {g: {link["interface"] for link in config(g)["links"]} for g in GATEWAYS}
    kep_lib = link_of("kep-gw", "kep-lib")
    target = LAN_HOSTS["pc-lib"]["ipv4"]
    assert f"dev {kep_lib['interface']}" in on("kep-gw", f"ip route get {target}").stdout
    # The radio "fades": its underlay carries WireGuard from and to kep-gw itself.
    outage, detour = silence_and_ping(
        kep_lib["underlay"], target, ("input priority -300", "output priority -300")
    )
    restored = wait_full()
    print(
        f"\nfailover kep-lib (radio) cut: traffic pc-kep -> pc-lib stopped for {outage:.2f} s "
        f"(bound {FAILOVER_BOUND:.2f} s = dead {DEAD} + SPF {SPF_DELAY} + hello {HELLO} + 1 s); "
        f"new path: {detour.split(' uid')[0].strip()}"
    )
    assert "dev l-hall" in detour  # round the ring: kep -> hall -> deya -> lib
    assert 0 < outage <= FAILOVER_BOUND
    assert kep_lib["interface"] in restored["kep-gw"]


def changed_hosts(output: str) -> set[str]:
    """Hosts with a changed task of their own (not the controller tasks delegated from them)."""
    return {m for m in re.findall(r"^changed: \[([^\]\s]+)\]", output, re.MULTILINE)}


def live_rulesets() -> dict[str, str]:
    """Each gateway -> sha256 of its live `inet kastro` table (stateless listing)."""
    command = "nft -s list table inet kastro | sha256sum"
    return {g: on(g, command).stdout.split()[0] for g in GATEWAYS}


def test_firewall_alone_compiles_what_links_yml_compiled(host):
    """Architecture (#14): the firewall's ruleset follows from the inventory, not from what the
    links role left on the gateway. With the links role's old local fact gone (as on a gateway
    it never ran on), firewall.yml alone changes nothing: same tunnels, WireGuard and OSPF."""
    before = live_rulesets()
    for gateway in GATEWAYS:
        on(gateway, "rm -rf /etc/ansible/facts.d")
    overlay = PROJECT / ".kastro" / "lab" / LAB / "inventory.yml"
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg")}
    run = subprocess.run(
        ["ansible-playbook", "-i", str(MUNICIPALITY), "-i", str(overlay), "--limit", "gateways",
         str(PROJECT / "playbooks" / "firewall.yml")],
        capture_output=True, text=True, cwd=PROJECT, env=env, timeout=900, stdin=subprocess.DEVNULL
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, failures(output)
    assert changed_hosts(output) == set(), output[-4000:]
    assert live_rulesets() == before


@pytest.fixture(scope="module")
def admin_inventory(tmp_path_factory) -> Path:
    """The admin's copy of the ring's inventory, changed test after test as an admin would."""
    inventory = tmp_path_factory.mktemp("admin") / "ring"
    shutil.copytree(MUNICIPALITY, inventory)
    return inventory


def add_links(inventory: Path, links: dict[str, dict]) -> tuple[list[str], str]:
    """What the admin does: add links to the model, re-plan, cable them (lab up), run
    links.yml. The lines `kastro apply` added, and the playbook's output."""
    model_file = inventory / "group_vars" / "all" / "model.yml"
    model = yaml.safe_load(model_file.read_text())
    model["kastro_links"].update(links)
    model_file.write_text(yaml.safe_dump(model, sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg")}
    planned = subprocess.run(
        ["kastro", "apply", str(inventory)],
        capture_output=True, text=True, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    added = [line.strip() for line in planned.stdout.splitlines() if line.strip().startswith("+")]
    cabled = subprocess.run(
        ["kastro", "lab", "up", str(inventory), "--lab", LAB],
        capture_output=True, text=True, cwd=PROJECT, env=env, timeout=300, stdin=subprocess.DEVNULL
    )  # fmt: skip
    assert cabled.returncode == 0, cabled.stderr
    overlay = PROJECT / ".kastro" / "lab" / LAB / "inventory.yml"
    run = subprocess.run(
        ["ansible-playbook", "-v", "-i", str(inventory), "-i", str(overlay),
         "-e", f"links_secrets_dir={os.environ['KASTRO_LINKS_SECRETS']}",
         str(PROJECT / "playbooks" / "links.yml")],
        capture_output=True, text=True, cwd=PROJECT, env=env, timeout=900, stdin=subprocess.DEVNULL
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, failures(output)
    return added, output


def wait_tunnels_full(tunnels: dict[str, str], timeout: float = 90) -> dict[str, set[str]]:
    # 90 s: hellos are 1 s apart, but a loaded CI machine once took more than 40 s here.
    deadline = time.monotonic() + timeout
    while True:
        full = {g: full_neighbors(g, "ipv4") for g in tunnels}
        if all(tunnels[g] in full[g] for g in tunnels) or time.monotonic() > deadline:
            return full
        time.sleep(1)


KEP_DEYA = {"kep-deya": {"ends": ["kep", "deya"], "medium": "radio", "capacity_mbps": 50}}


def test_a_new_link_changes_only_the_gateways_at_its_ends(host, admin_inventory):
    """The admin adds a radio link kep - deya, re-plans, cables it (lab up) and runs links.yml."""
    added, output = add_links(admin_inventory, KEP_DEYA)
    assert added and all(line.split()[1] == "links.kep-deya" for line in added), added
    assert changed_hosts(output) == {"kep-gw", "deya-gw"}
    new_tunnels = {"kep-gw": "wl-deya", "deya-gw": "wl-kep"}
    full = wait_tunnels_full(new_tunnels)
    state = {g: on(g, f"wg show {t}; ip -br addr show {t}; vtysh -c 'show ip ospf neighbor'").stdout
             for g, t in new_tunnels.items()}  # fmt: skip
    assert all(new_tunnels[g] in full[g] for g in new_tunnels), (full, state)
    print("\nnew link kep-deya: plan added only links.kep-deya; changed hosts: kep-gw, deya-gw")


def test_a_backup_radio_beside_a_fibre_takes_over_when_the_fibre_goes_silent(host, admin_inventory):
    """Issue #25: parallel paths between two buildings are links of their own. A radio beside
    the hall - kep fibre (after the previous test's kep - deya, which the lab still has):
    only hall-gw and kep-gw change, the fibre keeps its interfaces and the traffic while it
    works; when it goes silent, hall - kep traffic takes the radio, not the way round."""
    radio = {"hall-kep-radio": {"ends": ["hall", "kep"], "medium": "radio",
                                "capacity_mbps": 50, "cost": 1000}}  # fmt: skip
    added, output = add_links(admin_inventory, radio)
    assert {line.split()[1] for line in added} == {"links.hall-kep-radio"}, added
    assert changed_hosts(output) == {"hall-gw", "kep-gw"}
    tunnels = {g: link_of(g, "hall-kep-radio")["interface"] for g in ("hall-gw", "kep-gw")}
    full = wait_tunnels_full(tunnels)
    assert all(tunnels[g] in full[g] for g in tunnels), full
    fibre = link_of("kep-gw", "hall-kep")
    assert fibre["interface"] == "l-hall"  # unchanged by the radio beside it
    target = LAN_HOSTS["srv-hall"]["ipv4"]
    assert "dev l-hall" in on("kep-gw", f"ip route get {target}").stdout  # the cheaper fibre
    # A plain fibre carries the forwarded packets themselves (not WireGuard from the gateway),
    # so it goes silent in prerouting and postrouting: everything, forwarded or local.
    outage, detour = silence_and_ping(
        fibre["underlay"], target, ("prerouting priority -300", "postrouting priority 300")
    )
    print(
        f"\nfibre hall-kep silent: pc-kep -> srv-hall stopped for {outage:.2f} s (bound "
        f"{FAILOVER_BOUND:.2f} s); new path: {detour.split(' uid')[0].strip()}"
    )
    assert f"dev {tunnels['kep-gw']}" in detour  # the backup radio, not round the ring
    assert 0 < outage <= FAILOVER_BOUND


def test_ospf_keys_are_full_length_and_private():
    """Security review, finding 12: keys came from `tr -dc` over 64 random bytes and were often
    short (5 characters seen). Now every link's key is the 16 characters OSPFv2 MD5 takes, each
    file 0600 in a 0700 directory, and no two links share one."""
    secrets = Path(os.environ["KASTRO_LINKS_SECRETS"])
    keys = {p.name: p.read_text() for p in sorted(secrets.glob("*.ospf"))}
    assert len(keys) >= 5, keys.keys()
    assert all(len(k) == 16 and k.isalnum() for k in keys.values())
    assert len(set(keys.values())) == len(keys)
    assert oct(secrets.stat().st_mode)[-3:] == "700"
    assert all(oct((secrets / n).stat().st_mode)[-3:] == "600" for n in keys)
