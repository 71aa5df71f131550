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

import os
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


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_million_packets_of_municipal_service_traffic_raise_nothing(tmp_path):
    assert not _missing(), f"install: {' '.join(_missing())} (make deps does)"
    pcap = tmp_path / "benign.pcap"
    start = time.monotonic()
    made = subprocess.run(
        ["bash", str(SCRIPT), str(pcap), str(PACKETS), "300"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    print(f"\ncorpus made in {time.monotonic() - start:.0f} s: {made.stderr.strip()}")
    try:
        written: list = []
        engine = Engine(
            MonitorConfig().build_detectors(),
            AlertSink(None, max_per_second=1e9, on_write=written.append),
        )
        kinds: Counter[str] = Counter()
        read_start = time.monotonic()
        for batch in read_file(pcap):
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
    finally:
        pcap.unlink(missing_ok=True)
    total = sum(engine.stats.packets.values())
    print(f"{total} packets read in {seconds:.1f} s; by kind: {dict(kinds.most_common())}")
    assert total >= PACKETS, f"only {total} packets captured"
    assert set(kinds) == set(KINDS.values()), f"missing: {set(KINDS.values()) - set(kinds)}"
    assert written == [], "\n".join(f"{a.signature} {a.evidence}" for a in written[:10])


if __name__ == "__main__":  # a corpus file to look at: python -m tests.monitors.test_benign_corpus
    subprocess.run(["bash", str(SCRIPT), sys.argv[1] if len(sys.argv) > 1 else "benign.pcap"])
