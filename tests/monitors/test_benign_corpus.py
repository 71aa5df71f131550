"""Zero alerts on a million packets of ordinary municipal traffic (#15).

tests/data/pcaps/make_benign_corpus.sh captures, in network namespaces on a private bridge,
the real services a municipal network carries all day, all at once: DNS through a real
resolver (unbound, 3,000 names of the municipality's zone on dnsmasq), HTTPS pages and
apt-like package downloads, QUIC-like UDP on 443, SMB file copies (samba), SSH sessions and
rsync backups over SSH, NTP (chrony), SNMP polling by a monitoring host, VoIP-like RTP calls,
DHCP leases taken and released (dnsmasq), mDNS and SSDP chatter, ping and ARP, from eight
desktops. The monitor reads the capture with every detector on: any alert is a bug in a
threshold or in direction logic.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from monitors.alerts import AlertSink
from monitors.capture import read_file
from monitors.config import MonitorConfig
from monitors.engine import Engine
from monitors.packet import MalformedPacketError, parse

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "data" / "pcaps" / "make_benign_corpus.sh"
PACKETS = 1_000_000
# Traffic kinds by server port, each of which must be in the corpus.
KINDS = {
    ("udp", 53): "DNS", ("tcp", 445): "SMB", ("tcp", 22): "SSH and rsync",
    ("tcp", 443): "HTTPS", ("udp", 443): "QUIC-like", ("udp", 123): "NTP", ("udp", 161): "SNMP",
    ("udp", 16384): "RTP", ("udp", 5353): "mDNS", ("udp", 1900): "SSDP", ("udp", 67): "DHCP",
}  # fmt: skip
TOOLS = ("unbound", "dnsmasq", "sshd", "rsync", "smbd", "smbclient", "chronyd", "snmpd",
         "snmpbulkwalk", "dhclient", "tcpdump", "curl")  # fmt: skip


def _missing() -> list[str]:
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    return [t for t in TOOLS if not any(Path(d, t).exists() for d in path.split(":"))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One corpus for the monitor and Suricata: whole frames (Suricata follows the streams)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    assert not _missing(), f"install: {' '.join(_missing())} (make deps does)"
    pcap = tmp_path_factory.mktemp("benign") / "benign.pcap"
    start = time.monotonic()
    made = subprocess.run(
        ["bash", str(SCRIPT), str(pcap), str(PACKETS), "300", "0"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    print(f"\ncorpus made in {time.monotonic() - start:.0f} s: {made.stderr.strip()}")
    yield pcap
    pcap.unlink(missing_ok=True)


def test_a_million_packets_of_municipal_service_traffic_raise_nothing(corpus):
    written: list = []
    engine = Engine(
        MonitorConfig().build_detectors(),
        AlertSink(None, max_per_second=1e9, on_write=written.append),
    )
    kinds: Counter[str] = Counter()
    read_start = time.monotonic()
    for batch in read_file(corpus):
        engine.process_batch(batch)
        for ts, frame, wirelen in batch:
            try:
                pkt = parse(frame, ts, wirelen)
            except MalformedPacketError:
                continue
            if pkt.proto in (6, 17):
                for port in {pkt.sport, pkt.dport}:
                    kind = KINDS.get(("tcp" if pkt.proto == 6 else "udp", port))
                    if kind:
                        kinds[kind] += 1
    seconds = time.monotonic() - read_start
    total = sum(engine.stats.packets.values())
    print(f"{total} packets read in {seconds:.1f} s; by kind: {dict(kinds.most_common())}")
    assert total >= PACKETS, f"only {total} packets captured"
    assert set(kinds) == set(KINDS.values()), f"missing: {set(KINDS.values()) - set(kinds)}"
    assert written == [], "\n".join(f"{a.signature} {a.evidence}" for a in written[:10])


# The corpus's addresses as a municipality's zones, for Suricata's address groups: the servers
# (gw, mon, srv, dns, auth), the eight desktops as staff; the guest range stays empty (SMB
# from the desktops is a staff member's file copy, not an intrusion).
CORPUS_GROUPS = {
    "HOME_NET": "[10.79.0.0/24]", "KASTRO_SERVER_NETS": "[10.79.0.0/26]",
    "KASTRO_STAFF_NETS": "[10.79.0.96/27]", "KASTRO_MANAGEMENT_NETS": "[10.79.0.0/29]",
    "KASTRO_UNTRUSTED_NETS": "[10.79.0.128/26]", "KASTRO_VPN_NETS": "[10.79.0.192/26]",
}  # fmt: skip
ENGINE_EVENTS = range(2200000, 2300000)  # Suricata's own decoder/stream/app-layer event rules


@pytest.mark.skipif(shutil.which("suricata") is None, reason="make deps installs Suricata")
def test_suricata_with_the_deployed_rules_sends_the_soc_nothing(corpus, tmp_path):
    """The example municipality's ruleset (Kastro's pack, Suricata's event rules), the role's
    configuration: no signature matches, and the engine's own protocol events that do (kept:
    they are evidence when an incident is investigated) are severity 3, which neither
    KastroIdsAlert nor the forwarder passes on."""
    from kastro.controller.model_vars import model_variables
    from kastro.suricata import config, ruleset
    from tests.unit.test_suricata import render

    variables = config.variables(model_variables(str(ROOT / "inventory" / "example")))
    variables["address-groups"] = {**variables["address-groups"], **CORPUS_GROUPS}
    built = ruleset.build([], ruleset.Tuning(), variables)
    for sub in ("log", "rules"):
        (tmp_path / sub).mkdir()
    (tmp_path / "rules" / "kastro.rules").write_text(built.text)
    conf = render(tmp_path, variables)
    start = time.monotonic()
    ran = subprocess.run(
        ["suricata", "-v", "-c", str(conf), "-r", str(corpus), "-l", str(tmp_path / "log"),
         "--runmode", "autofp"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "log" / "eve.json").open()]
    alerts = [r["alert"] for r in records if r["event_type"] == "alert"]
    events = Counter(f"{a['signature_id']} {a['signature']} (severity {a['severity']})"
                     for a in alerts)  # fmt: skip
    read = re.search(r"read \d+ files?, (\d+) packets", ran.stdout + ran.stderr)
    assert read, (ran.stdout + ran.stderr)[-2000:]
    flows = Counter(r.get("app_proto", "none") for r in records if r["event_type"] == "flow")
    print(f"\nSuricata read {read.group(1)} packets in {time.monotonic() - start:.1f} s with "
          f"{built.enabled} Kastro rules; flows by protocol: {dict(flows.most_common())}; "
          f"engine events kept: {dict(events)}")  # fmt: skip
    assert int(read.group(1)) >= PACKETS
    signatures = [a for a in alerts if a["signature_id"] not in ENGINE_EVENTS]
    assert signatures == [], signatures[:5]
    assert all(a["severity"] == 3 for a in alerts), [a for a in alerts if a["severity"] < 3][:5]


if __name__ == "__main__":  # a corpus file to look at: python -m tests.monitors.test_benign_corpus
    subprocess.run(["bash", str(SCRIPT), sys.argv[1] if len(sys.argv) > 1 else "benign.pcap"])
