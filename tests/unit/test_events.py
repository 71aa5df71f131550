"""#17: the sensors' EVE events reach the collector over TLS, and a cut loses nothing.

The configurations kastro.monitoring.events writes run here in two real rsyslogd instances
(Debian's rsyslog and rsyslog-gnutls) on loopback, with certificates from the monitoring CA
made by kastro.monitoring.credentials: lines arrive unchanged; while the collector is down
(a WAN cut) and even when the sensor's shipper is killed, nothing is lost; a certificate of a
name the collector does not know, or none, delivers nothing.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from kastro.monitoring import credentials, events
from kastro.monitoring.topology import MonitoringModelError

ROOT = Path(__file__).resolve().parents[2]
RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
)
GTLS = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")
needs_rsyslog = pytest.mark.skipif(
    RSYSLOGD is None or not GTLS.exists(), reason="apt install rsyslog rsyslog-gnutls"
)


def whole(inventory: Path) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    return variables


def test_every_managed_host_ships_to_the_named_collector_which_admits_only_them():
    variables = whole(ROOT / "tests" / "data" / "lab-small")
    managed = ["annex-gw", "files", "hall-gw", "probe", "web"]
    ship = events.shipping(variables, "probe")
    assert ship == {
        "host": "probe",
        "clients": managed,
        "groups": ["adm", "systemd-journal", "kastro-monitor", "suricata"],
        "collector": "web",
        "address": "10.30.0.42",
        "port": 6514,
        "files": [
            {"path": "/var/log/kastro/eve.json", "tag": "kastro-eve"},
            {"path": "/var/log/suricata/eve.json", "tag": "kastro-eve"},
            {"path": "/var/log/kastro-clamav/eve.json", "tag": "kastro-eve"},
        ],
        "journal": True,
    }
    server = events.shipping(variables, "files")
    assert server["files"] == [{"path": "/var/log/kastro-clamav/eve.json", "tag": "kastro-eve"}]
    assert server["groups"] == ["adm", "systemd-journal"] and server["journal"]
    assert events.shipping(variables, "web")["host"] == "web"  # the collector keeps its own
    collect = events.collecting(variables, "web")
    assert collect["peers"] == managed
    # A gateway is known by every address it may connect from: zones, link ends, router id.
    plan = variables["kastro_plan"]
    assert collect["sources"]["10.30.0.33"] == "hall-gw"  # its address in the servers' zone
    assert collect["sources"][plan["links"]["hall-annex"]["ends"]["annex"]["ipv4"]] == "annex-gw"
    assert collect["sources"][plan["router_ids"]["annex-gw"]["ipv4"]] == "annex-gw"
    assert collect["sources"]["10.30.0.54"] == "probe"
    assert events.collecting(variables, "probe") == {}
    assert events.shipping(variables, "nobody") == {}
    variables["kastro_municipality"] = {**variables["kastro_municipality"], "event_collector": ""}
    assert events.shipping(variables, "probe") == {} and events.collecting(variables, "web") == {}


def test_a_value_that_could_break_the_configuration_is_refused():
    paths = events.Paths(work="/var/lib/x", ca="/etc/ca.crt", cert="/etc/c.crt", key="/etc/c.key")
    ship = {"host": "probe", "collector": "web", "address": "10.0.0.1", "port": 6514,
            "files": [{"path": '/var/log/x" file="/etc/shadow', "tag": "kastro-eve"}]}  # fmt: skip
    with pytest.raises(MonitoringModelError, match="not an absolute path"):
        events.shipper_config(ship, paths)
    with pytest.raises(MonitoringModelError, match="not an IP address"):
        events.shipper_config({**ship, "address": "10.0.0.1 port=1"}, paths)
    with pytest.raises(MonitoringModelError, match="may not go into"):
        events.collector_config({"address": "10.0.0.1", "port": 6514, "peers": ['a"]']}, paths)
    with pytest.raises(MonitoringModelError, match="not an IP address"):
        events.host_table({"sources": {'10.0.0.1"': "probe"}})
    with pytest.raises(MonitoringModelError, match="no file for the tag"):
        events.shipper_config({**ship, "files": [{"path": "/var/log/x", "tag": "kastro-x"}]}, paths)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pair:
    """A collector and a shipper (named 'probe') in a temporary directory, on loopback."""

    def __init__(self, root: Path, claim: str = "probe") -> None:
        self.root = root
        self.secrets = root / "secrets"
        credentials.ensure(self.secrets, "test.gr", "web", ["127.0.0.1"], ["probe", "intruder"])
        self.port = _free_port()
        self.eve = root / "eve.json"
        self.eve.write_text("")
        self.out = root / "events"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for side in ("collector", "shipper"):
            (root / side).mkdir()
        self.collect = {"address": "127.0.0.1", "port": self.port, "peers": ["probe"],
                        "sources": {"127.0.0.1": "probe"}}  # fmt: skip
        collector = events.collector_config(
            self.collect,
            events.Paths(
                work=str(root / "collector"),
                ca=str(self.secrets / "ca.crt"),
                cert=str(self.secrets / "web.crt"),
                key=str(self.secrets / "web.key"),
                events=str(self.out),
                hosts=str(root / "hosts.json"),
            ),
        )
        (root / "hosts.json").write_text(events.host_table(self.collect))
        shipper = events.shipper_config(
            {"host": claim, "collector": "web", "address": "127.0.0.1", "port": self.port,
             "files": [{"path": str(self.eve), "tag": "kastro-eve"}]},
            events.Paths(
                work=str(root / "shipper"),
                ca=str(self.secrets / "ca.crt"),
                cert=str(self.secrets / "clients" / "probe.crt"),
                key=str(self.secrets / "clients" / "probe.key"),
            ),
        )  # fmt: skip
        (root / "collector.conf").write_text(collector)
        (root / "shipper.conf").write_text(shipper)

    def check(self, side: str) -> None:
        checked = subprocess.run(
            [str(RSYSLOGD), "-N1", "-f", str(self.root / f"{side}.conf")],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def start(self, side: str) -> None:
        log = (self.root / f"{side}.log").open("ab")
        self.procs[side] = subprocess.Popen(
            [str(RSYSLOGD), "-n", "-iNONE", "-f", str(self.root / f"{side}.conf")],
            stdout=log, stderr=log,
        )  # fmt: skip
        time.sleep(1.5)

    def stop(self, side: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(side)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def write(self, numbers: range) -> list[str]:
        lines = [
            f'{{"timestamp":"2026-12-05T14:00:00.{n:06d}+0000","event_type":"alert","n":{n},'
            f'"alert":{{"signature":"Σάρωση \\"θυρών\\" {n}"}}}}'
            for n in numbers
        ]
        with self.eve.open("a", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
                f.flush()
        return lines

    def received(self, want: int, timeout: float = 30) -> list[str]:
        path = self.out / "probe" / "eve.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and len(path.read_text(encoding="utf-8").splitlines()) >= want:
                break
            time.sleep(0.3)
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def close(self) -> None:
        for side in list(self.procs):
            self.stop(side, signal.SIGKILL)


@contextmanager
def pair(root: Path, claim: str = "probe") -> Iterator[Pair]:
    running = Pair(root, claim)
    try:
        yield running
    finally:
        running.close()


@needs_rsyslog
def test_events_arrive_unchanged_and_a_cut_loses_nothing(tmp_path):
    with pair(tmp_path) as p:
        p.check("collector")
        p.check("shipper")
        p.start("collector")
        p.start("shipper")
        sent = p.write(range(0, 20))
        assert p.received(20) == sent  # unchanged, in order, UTF-8 and quotes intact
        # A WAN cut: the collector is gone while the sensor keeps writing...
        p.stop("collector")
        sent += p.write(range(20, 60))
        time.sleep(2)
        # ...and the sensor's shipper is killed outright, then restarted.
        p.stop("shipper", signal.SIGKILL)
        sent += p.write(range(60, 80))
        p.start("shipper")
        time.sleep(2)
        p.start("collector")
        got = p.received(80, timeout=60)
    assert set(got) == set(sent), f"lost: {sorted(set(sent) - set(got))[:3]}"
    duplicates = len(got) - len(set(got))
    print(f"80 events, {len(got)} received after a cut and a kill ({duplicates} sent twice)")
    assert duplicates <= 2  # at most the line in flight when the shipper was killed


@needs_rsyslog
def test_the_collector_admits_only_the_managed_hosts_certificates(tmp_path):
    with pair(tmp_path) as p:
        p.start("collector")
        record = b'{"event_type":"alert","forged":true}'
        frame = b"<14>1 - probe kastro-eve - - - " + record
        for cert in ("intruder", None):
            send_frames(p, [frame], cert)
        time.sleep(1)
        assert not p.out.exists() or not any(p.out.rglob("*.json"))
        log = (tmp_path / "collector.log").read_text(errors="replace")
    assert "not permitted to talk to it" in log
    assert os.stat(p.secrets / "clients" / "probe.key").st_mode & 0o077 == 0


def send_frames(p: Pair, frames: list[bytes], cert: str | None = "probe") -> None:
    """RFC 5425 frames over TLS, with a client certificate of the monitoring CA (or none)."""
    context = ssl.create_default_context(cafile=str(p.secrets / "ca.crt"))
    context.check_hostname = False
    if cert:
        context.load_cert_chain(
            p.secrets / "clients" / f"{cert}.crt", p.secrets / "clients" / f"{cert}.key"
        )
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                for frame in frames:
                    tls.sendall(str(len(frame)).encode() + b" " + frame)
                time.sleep(1)
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass  # refused during or right after the handshake (or closed after the frames)


@needs_rsyslog
def test_the_shipper_with_the_journal_passes_rsyslogs_own_check(tmp_path):
    """The configuration every host gets (its journal half included) as rsyslogd reads it."""
    variables = whole(ROOT / "tests" / "data" / "lab-small")
    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text("")
    paths = events.Paths(work=str(tmp_path), ca=str(tmp_path / "ca.crt"),
                         cert=str(tmp_path / "c.crt"), key=str(tmp_path / "c.key"))  # fmt: skip
    for host in ("probe", "hall-gw"):
        conf = tmp_path / f"{host}.conf"
        conf.write_text(events.shipper_config(events.shipping(variables, host), paths))
        checked = subprocess.run([str(RSYSLOGD), "-N1", "-f", str(conf)], capture_output=True,
                                 text=True, timeout=30, check=False)  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert "imjournal" in conf.read_text()


@needs_rsyslog
def test_each_kind_of_line_has_its_own_file_and_an_unknown_kind_is_dropped(tmp_path):
    """What the shipper's journal half sends (kastro.monitoring.events._journal): a login as
    "TAG[PID]: text" gets the time it was logged in front, an audit record stays as it is;
    a tag the collector keeps no file for is dropped, never written anywhere."""
    stamp = "2026-12-06T09:10:11.123456+00:00"
    login = "sshd[412]: Accepted publickey for kastro-admin from 10.30.0.2 port 50112 ssh2"
    audit = 'type=SYSCALL msg=audit(1765012211.123:77): syscall=257 key="identity"'
    frames = [
        f"<86>1 {stamp} probe kastro-auth - - - {login}".encode(),
        f"<14>1 {stamp} probe kastro-audit - - - {audit}".encode(),
        f"<14>1 {stamp} probe kastro-other - - - /etc/shadow".encode(),
        f"<14>1 {stamp} probe ../../etc - - - escape".encode(),
    ]
    with pair(tmp_path) as p:
        p.start("collector")
        send_frames(p, frames)
        host = p.out / "probe"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (host / "audit.log").exists():
            time.sleep(0.3)
        time.sleep(1)
    assert (host / "auth.log").read_text().splitlines() == [f"{stamp} {login}"]
    assert (host / "audit.log").read_text().splitlines() == [audit]
    assert sorted(f.name for f in p.out.rglob("*") if f.is_file()) == ["audit.log", "auth.log"]


@needs_rsyslog
def test_a_host_cannot_write_as_another(tmp_path):
    """The file is chosen by the connection's address (the plan's table), not by the host name
    a sensor puts in its messages."""
    with pair(tmp_path, claim="files") as p:
        p.start("collector")
        p.start("shipper")
        sent = p.write(range(3))
        assert p.received(3) == sent
    assert [d.name for d in p.out.iterdir()] == ["probe"]


@needs_rsyslog
def test_a_line_break_inside_a_message_cannot_forge_a_second_line(tmp_path):
    """A journal message may hold line breaks (sd_journal_send, `systemd-cat`): a local user's
    message on a managed host ends up as one line at the collector, its breaks shown as #012,
    never as a second auth.log line that looks like sshd's own."""
    stamp = "2026-12-06T09:10:11.123456+00:00"
    forged = f"{stamp} sshd[1]: Accepted password for root (exe=/usr/sbin/sshd uid=0)"
    message = f"backup[77]: done\n{forged}\r\n{forged} (exe=/usr/bin/python3 uid=1000)"
    frames = [f"<86>1 {stamp} probe kastro-auth - - - {message}".encode()]
    with pair(tmp_path) as p:
        p.start("collector")
        send_frames(p, frames)
        path = p.out / "probe" / "auth.log"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not path.exists():
            time.sleep(0.3)
        time.sleep(1)
    lines = path.read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{stamp} backup[77]: done#012{stamp} sshd[1]: "), lines
