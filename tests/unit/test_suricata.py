"""Suricata's rules (kastro.suricata) and their reload (kastro.host.suricata), with the real
suricata-update on the controller side and a real Suricata 7 in a network namespace of the
test's own: the role's configuration template, rendered, is what the engine runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import jinja2
import pytest
import yaml

from kastro.controller.model_vars import model_variables
from kastro.host import suricata as host
from kastro.suricata import config, ruleset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
TEMPLATES = ROOT / "roles" / "suricata" / "templates"
DEFAULTS = ROOT / "roles" / "suricata" / "defaults" / "main.yml"


@pytest.fixture(scope="module")
def variables():
    return config.variables(model_variables(str(EXAMPLE)))


def build(variables, sources=(), **tuning):
    tuned = ruleset.tuning(
        tuning.get("enable", []), tuning.get("disable", []), tuning.get("drop", []),
        tuning.get("modify", []),
    )  # fmt: skip
    return ruleset.build(list(sources), tuned, variables)


def active(text: str, sid: int) -> bool:
    return any(line.startswith(("alert", "drop")) and f"sid:{sid};" in line
               for line in text.splitlines())  # fmt: skip


# --- the model's variables --------------------------------------------------------------------


def test_home_net_is_the_supernets_and_vpn_pools_and_the_zones_are_grouped_by_kind(variables):
    groups = variables["address-groups"]
    assert groups["HOME_NET"].startswith("[10.20.0.0/16,fd4b:5354:2000::/48,")
    assert "10.20.4.192/26" in groups["HOME_NET"]  # the finance VPN pool
    assert groups["EXTERNAL_NET"] == "!$HOME_NET"
    assert "10.20.3.64/27" in groups["KASTRO_UNTRUSTED_NETS"]  # cityhall.cctv
    assert "10.20.3.64/27" not in groups["KASTRO_SERVER_NETS"]


def test_server_groups_are_the_hosts_offering_the_service_and_the_zones_opened_to_it(variables):
    plan = model_variables(str(EXAMPLE))["kastro_plan"]
    groups = variables["address-groups"]
    servers = plan["zones"]["cityhall.servers"]
    # policy.yml opens dns to cityhall.servers; no host declares it.
    assert groups["DNS_SERVERS"] == f"[{servers['ipv4']},{servers['ipv6']}]"
    # intranet declares web; staff reach cityhall.servers for web.
    http = groups["HTTP_SERVERS"].strip("[]").split(",")
    assert f"{plan['hosts']['intranet']['ipv4']}/32" in http and servers["ipv4"] in http
    assert plan["zones"]["cityhall.guest"]["ipv4"] not in http
    # The mail relay declares smtp (and the policy opens it to no zone): itself only.
    mail = plan["hosts"]["mailrelay"]
    assert groups["SMTP_SERVERS"] == f"[{mail['ipv4']}/32,{mail['ipv6']}/128]"


def test_the_sensors_own_address_is_home_when_it_lies_outside_the_supernets():
    variables = model_variables(str(EXAMPLE))
    outside = config.variables({**variables, "ansible_host": "10.89.0.7"})
    inside = config.variables({**variables, "ansible_host": "10.20.3.107"})
    assert outside["address-groups"]["HOME_NET"].endswith(",10.89.0.7/32]")
    assert (
        inside["address-groups"]["HOME_NET"]
        == config.variables(variables)["address-groups"]["HOME_NET"]
    )


def test_a_municipality_without_guest_iot_or_cctv_zones_has_no_untrusted_group():
    ring = config.variables(model_variables(str(ROOT / "molecule" / "_lab" / "ring")))
    assert "KASTRO_UNTRUSTED_NETS" not in ring["address-groups"]
    built = ruleset.build([], ruleset.Tuning(), ring)
    assert not active(built.text, 9200001)  # SMB from guest zones: nothing to watch
    assert active(built.text, 9200010)


# --- the build (real suricata-update, offline) ------------------------------------------------


def test_the_pack_alone_is_built_offline_with_the_canary_last(variables):
    built = build(variables)
    lines = [line for line in built.text.splitlines() if line.startswith("alert")]
    assert all("KASTRO" in line for line in lines)  # no ET Open, no distribution rules
    assert lines[-1].startswith('alert udp any any -> 127.0.0.1 9 (msg:"KASTRO canary ')
    assert built.canary in lines[-1] and f"sid:{ruleset.CANARY_SID};" in lines[-1]
    assert build(variables).text == built.text  # the same inputs, the same bytes


def test_tuning_survives_every_build_of_a_changed_source(variables, tmp_path):
    """disable, drop and modify are applied to whatever the source holds now."""
    source = tmp_path / "mirror"
    (source / "rules").mkdir(parents=True)
    tarball = tmp_path / "mirror.tar.gz"

    def publish(rev: int) -> list[ruleset.Source]:
        (source / "rules" / "csirt.rules").write_text(
            f'alert http any any -> $HOME_NET any (msg:"CSIRT bad path v{rev}"; '
            f'flow:established,to_server; http.uri; content:"/evil{rev}"; sid:7700001; '
            f"rev:{rev};)\n"
            f'alert tcp any any -> any 4444 (msg:"CSIRT shell"; flags:S; sid:7700002; rev:{rev};)\n'
        )
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(source / "rules", arcname="rules")
        return ruleset.sources([{"name": "csirt", "url": f"file://{tarball}"}])

    tuning = {
        "disable": ["7700002"],
        "modify": [{"match": "7700001", "from": "CSIRT", "to": "ΔΗΜΟΣ"}],
    }
    for rev in (1, 2):
        built = build(variables, publish(rev), **tuning)
        assert f'msg:"ΔΗΜΟΣ bad path v{rev}"' in built.text
        assert not active(built.text, 7700002)
    assert "/evil2" in built.text and "/evil1" not in built.text


def test_a_rule_disabled_in_the_inventory_is_out_and_the_canary_changes(variables):
    before, after = build(variables), build(variables, disable=["9200050"])
    assert active(before.text, 9200050) and not active(after.text, 9200050)
    assert before.canary != after.canary


@pytest.mark.parametrize(
    ("what", "value", "words"),
    [
        ("sources", [{"name": "et", "url": "http://rules.example.net/et.tar.gz"}], "file:///"),
        ("sources", [{"name": "et", "url": "file:///nonexistent/et.tar.gz"}], "no such file"),
        ("sources", [{"name": "Bad Name", "url": "file:///etc/hostname"}], "lower-case"),
        ("sources", [{"name": "kastro", "url": "file:///etc/hostname"}], "not 'kastro'"),
        ("sources", [{"name": "a", "url": "file:///etc/hostname", "x": 1}], "exactly name and url"),
        ("disable", ["9200050\nre:.*"], "a SID"),
        ("disable", ['re:"; touch /tmp/x'], "a SID"),
        ("modify", [{"match": "9200050", "from": 'a"b', "to": "c"}], "without quotes"),
        ("modify", [{"match": "9200050", "from": "a"}], "exactly match, from and to"),
    ],
)
def test_bad_sources_and_tuning_are_refused_with_the_field(what, value, words):
    with pytest.raises(ruleset.RulesetError, match=words):
        if what == "sources":
            ruleset.sources(value)
        else:
            ruleset.tuning(
                [], value if what == "disable" else [], [], value if what == "modify" else []
            )


def test_thresholds_become_threshold_config_lines_and_bad_ones_are_refused():
    lines = ruleset.threshold_lines([
        {"sid": 9200021, "type": "suppress", "track": "by_src", "ip": "10.20.1.5"},
        {"sid": 9200010, "type": "limit", "track": "by_src", "count": 1, "seconds": 3600},
        {"sid": 2210054, "type": "suppress"},
    ])  # fmt: skip
    assert lines == [
        "suppress gen_id 1, sig_id 9200021, track by_src, ip 10.20.1.5",
        "threshold gen_id 1, sig_id 9200010, type limit, track by_src, count 1, seconds 3600",
        "suppress gen_id 1, sig_id 2210054",
    ]
    for bad, words in (
        ({"sid": 1, "type": "suppress", "track": "by_src", "ip": "10.0.0.1, track by_dst"}, "ip"),
        ({"sid": 1, "type": "limit", "track": "by_src", "count": 0, "seconds": 60}, "count > 0"),
        ({"sid": "1;", "type": "limit"}, "sid"),
        ({"sid": 1, "type": "pass"}, "type is one of"),
    ):
        with pytest.raises(ruleset.RulesetError, match=words):
            ruleset.threshold_lines([bad])


def test_only_a_canary_captured_on_the_loopback_proves_a_reload():
    alert = {"event_type": "alert", "alert": {"signature_id": ruleset.CANARY_SID,
             "signature": "KASTRO canary 0123456789abcdef"}}  # fmt: skip
    line = json.dumps({**alert, "in_iface": "lo"}).encode()
    assert host.proves(line, "0123456789abcdef")
    assert not host.proves(line, "fedcba9876543210")
    assert not host.proves(json.dumps({**alert, "in_iface": "eth0"}).encode(), "0123456789abcdef")
    assert not host.proves(b'{"kastro-canary": ', "0123456789abcdef")


# --- the engine (real Suricata in a namespace of the test's own) -------------------------------


def render(folder: Path, variables) -> Path:
    defaults = yaml.safe_load(DEFAULTS.read_text())
    values = {
        **{k: v for k, v in defaults.items() if "{{" not in str(v)},
        "suricata_vars": variables,
        "suricata_interfaces": ["cap0"],
        "suricata_threads": 1,
        "suricata_log_dir": str(folder / "log"),
        "suricata_rules_dir": str(folder / "rules"),
        "suricata_socket": str(folder / "command.socket"),
        "suricata_threshold_lines": [],
        "ansible_managed": "test",
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)  # fmt: skip
    env.filters["to_json"] = json.dumps
    text = env.get_template("etc/suricata/suricata.yaml.j2").render(values)
    path = folder / "suricata.yaml"
    path.write_text(
        text.replace("/etc/suricata/threshold.config", str(folder / "threshold.config"))
    )
    (folder / "threshold.config").write_text("")
    return path


class Engine:
    def __init__(self, folder: Path, netns: str, conf: Path) -> None:
        self.folder, self.netns, self.conf = folder, netns, conf
        self.paths = host.Paths(
            candidate=folder / "candidate.rules", live=folder / "rules" / "kastro.rules",
            config=conf, socket=folder / "command.socket", eve=folder / "log" / "eve.json",
            metrics=folder / "ruleset.prom",
        )  # fmt: skip

    def apply(self, built: ruleset.Built) -> subprocess.CompletedProcess[str]:
        self.paths.candidate.write_text(built.text)
        p = self.paths
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, "python3", "-m", "kastro.host.suricata", "apply",
             "--candidate", str(p.candidate), "--live", str(p.live), "--config", str(p.config),
             "--socket", str(p.socket), "--eve", str(p.eve), "--metrics", str(p.metrics),
             "--canary", built.canary, "--wait", "15"],
            capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    def alerts(self) -> list[dict]:
        if not self.paths.eve.exists():
            return []
        records = [json.loads(line) for line in self.paths.eve.read_text().splitlines() if line]
        return [r for r in records if r.get("event_type") == "alert"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, variables):
    folder = tmp_path_factory.mktemp("suricata")
    for sub in ("log", "rules"):
        (folder / sub).mkdir()
    (folder / "rules" / "kastro.rules").write_text("")
    netns = f"kst-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    for argv in (["link", "set", "lo", "up"],
                 ["link", "add", "cap0", "type", "veth", "peer", "name", "cap1"],
                 ["link", "set", "cap0", "up"], ["link", "set", "cap1", "up"]):  # fmt: skip
        subprocess.run(["ip", "-n", netns, *argv], check=True)
    conf = render(folder, variables)
    log = (folder / "suricata.out").open("w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, "suricata", "--af-packet", "-c", str(conf)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield Engine(folder, netns, conf)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def send_http(engine: Engine, path: str, agent: str) -> None:
    """One whole HTTP request and answer, from the internet to a municipal server, into cap1
    (Suricata captures cap0, its other end)."""
    from scapy.all import IP, TCP, Ether, Raw, wrpcap

    client, server = "198.51.100.7", "10.20.2.10"
    c, s, sport = 1000, 5000, 40000 + int(time.time()) % 20000
    request = f"GET {path} HTTP/1.1\r\nHost: intranet\r\nUser-Agent: {agent}\r\n\r\n".encode()
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    def seg(src, dst, sp, dp, flags, seq, ack, data=b""):
        return (
            Ether()
            / IP(src=src, dst=dst)
            / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
            / Raw(data)
        )

    packets = [
        seg(client, server, sport, 80, "S", c, 0),
        seg(server, client, 80, sport, "SA", s, c + 1),
        seg(client, server, sport, 80, "A", c + 1, s + 1),
        seg(client, server, sport, 80, "PA", c + 1, s + 1, request),
        seg(server, client, 80, sport, "A", s + 1, c + 1 + len(request)),
        seg(server, client, 80, sport, "PA", s + 1, c + 1 + len(request), answer),
        seg(client, server, sport, 80, "FA", c + 1 + len(request), s + 1 + len(answer)),
        seg(server, client, 80, sport, "FA", s + 1 + len(answer), c + 2 + len(request)),
        seg(client, server, sport, 80, "A", c + 2 + len(request), s + 2 + len(answer)),
    ]
    pcap = engine.folder / f"http-{sport}.pcap"
    wrpcap(str(pcap), packets)
    sender = (
        "import sys; from scapy.all import rdpcap, sendp; "
        "sendp(rdpcap(sys.argv[1]), iface='cap1', verbose=False)"
    )
    subprocess.run(["ip", "netns", "exec", engine.netns, "python3", "-c", sender, str(pcap)],
                   check=True, timeout=60)  # fmt: skip


def wait_for(engine: Engine, sid: int, after: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(a["alert"]["signature_id"] == sid for a in engine.alerts()[after:]):
            return True
        time.sleep(0.5)
    return False


def test_a_ruleset_goes_live_only_when_its_canary_proves_the_running_engine_has_it(
    engine, variables
):
    built = build(variables)
    done = engine.apply(built)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["result"] == "live" and result["rules_failed"] == 0
    engine_rules = sum(
        1
        for name in yaml.safe_load(DEFAULTS.read_text())["suricata_engine_rule_files"]
        for line in (Path("/etc/suricata/rules") / name).read_text().splitlines()
        if line.startswith(("alert", "drop", "pass"))
    )
    assert result["rules_loaded"] == built.enabled + engine_rules
    print(f"\nreload and canary: {result['seconds']} s (canary {result['canary_seconds']} s)")
    metrics = engine.paths.metrics.read_text()
    assert f"kastro_suricata_reload_seconds {result['seconds']}\n" in metrics
    seen = len(engine.alerts())
    send_http(engine, "/cgi-bin/.%2e/.%2e/.%2e/etc/passwd", "sqlmap/1.7.2#stable")
    for sid in (9200031, 9200050):
        assert wait_for(engine, sid, seen), f"SID {sid} not raised; {engine.alerts()[-3:]}"
    alert = next(a for a in engine.alerts()[seen:] if a["alert"]["signature_id"] == 9200050)
    assert alert["community_id"].startswith("1:") and alert["src_ip"] == "198.51.100.7"


def test_a_broken_candidate_is_rejected_and_the_old_ruleset_keeps_alerting(engine, variables):
    good = build(variables)
    assert engine.apply(good).returncode == 0
    body = good.text.rsplit("alert udp any any -> 127.0.0.1", 1)[0]
    broken = ruleset.with_canary(
        body + 'alert http any any -> any any (msg:"x"; http.nosuch; sid:1;)\n'
    )
    before = engine.paths.live.read_bytes()
    done = engine.apply(broken)
    assert done.returncode == 1
    assert "rejected" in done.stderr and "http.nosuch" in done.stderr
    assert engine.paths.live.read_bytes() == before
    seen = len(engine.alerts())
    # The old ruleset's canary, sent inside the namespace, still raises its alert.
    canary = "import sys; from kastro.host.suricata import send_canary; send_canary(sys.argv[1])"
    subprocess.run(["ip", "netns", "exec", engine.netns, "python3", "-c", canary, good.canary],
                   check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert wait_for(engine, ruleset.CANARY_SID, seen), "the old ruleset no longer runs"


def test_a_rule_disabled_in_the_inventory_stops_firing_after_the_next_update(engine, variables):
    assert engine.apply(build(variables, disable=["9200050"])).returncode == 0
    seen = len(engine.alerts())
    send_http(engine, "/index.html", "sqlmap/1.7.2#stable")
    assert not wait_for(engine, 9200050, seen, seconds=6)
    assert engine.apply(build(variables)).returncode == 0
    seen = len(engine.alerts())
    send_http(engine, "/index.html", "sqlmap/1.7.2#stable")
    assert wait_for(engine, 9200050, seen)


def test_the_collector_counts_alerts_by_signature_and_reads_the_engines_stats(engine, variables):
    """kastro-suricata collect, on the engine's own files after the attacks above."""
    assert engine.apply(build(variables)).returncode == 0
    seen = len(engine.alerts())
    send_http(engine, "/index.html", "Nikto/2.5.0")
    assert wait_for(engine, 9200051, seen)
    stats = engine.folder / "log" / "stats.json"
    deadline = time.monotonic() + 30  # the engine writes its stats every 15 s
    while not (stats.exists() and stats.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(1)
    output = engine.folder / "kastro_suricata.prom"
    assert host.main(["collect", "--eve", str(engine.paths.eve), "--stats", str(stats),
                      "--output", str(output), "--once"]) == 0  # fmt: skip
    text = output.read_text()
    assert 'sid="9200051",signature="KASTRO attack tool user agent (Nikto)"} 1.0' in text
    assert "9299999" not in text  # the canary proves reloads; it is no attack
    assert "kastro_suricata_rules_failed 0.0" in text and "kastro_suricata_rules_loaded " in text
    assert "kastro_suricata_capture_packets_total " in text


def test_a_reload_under_traffic_loses_at_most_one_packet_in_a_thousand(engine, variables, tmp_path):
    """tcpreplay sends 30,000 packets at 5,000 per second into the capture while a new
    ruleset is tested, reloaded and proven: the engine's own counters show what it lost."""
    pcap = tmp_path / "traffic.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_pcap.py"), str(pcap),
                    "--packets", "30000"], check=True, capture_output=True)  # fmt: skip
    stats = engine.folder / "log" / "stats.json"

    def capture() -> dict:
        lines = stats.read_text().splitlines() if stats.exists() else []
        return json.loads(lines[-1])["stats"]["capture"] if lines else {}

    def settled(previous: dict) -> dict:
        deadline = time.monotonic() + 40  # the engine writes its stats every 15 s
        while time.monotonic() < deadline:
            now = capture()
            if now and now != previous:
                return now
            time.sleep(1)
        return capture()

    before = settled({})
    replay = subprocess.Popen(
        ["ip", "netns", "exec", engine.netns, "tcpreplay", "-q", "-i", "cap1", "--pps=5000",
         "--limit", "30000", str(pcap)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2)
    done = engine.apply(build(variables, disable=["9200036"]))
    _, err = replay.communicate(timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert replay.returncode == 0, err
    after = settled(before)
    seen = after["kernel_packets"] - before["kernel_packets"]
    dropped = after["kernel_drops"] - before["kernel_drops"]
    print(f"\nreload under 5,000 packets/s: {seen} captured of 30,000, {dropped} dropped, "
          f"reload {json.loads(done.stdout)['seconds']} s")  # fmt: skip
    assert seen >= 30000 * 0.999 and dropped <= 30


def test_the_forwarder_never_sends_the_canary_to_the_soc():
    unit = (TEMPLATES / "etc/systemd/system/kastro-ids-forward.service.j2").read_text()
    assert f"--ignore-sid {host.CANARY_SID} " in unit
    assert "--max-severity {{ suricata_forward_max_severity | int }}" in unit
