"""The endpoint role measured from outside on a kernel of its own: audit records what the issue
names, faillock locks and unlocks, and OpenSCAP's ANSSI-BP-028 scan scores the host with every
failure waived (roles/endpoint/waivers.yml)."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kastro.lab import scap, vm
from tests.vm.test_vm_endpoint import converge_server, ensure_server

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
WAIVERS = ROOT / "roles" / "endpoint" / "waivers.yml"
# Measured on the test VM (a server of the example, the R28 disk layout, no collector
# forwarding), 2026-12-06: enhanced 94.1 % of 271, intermediary 95.3 % of 191. The floors the
# role must not fall below; why the 97 / 99 are out of reach is in roles/endpoint/README.md.
ENHANCED_FLOOR = 93.5
INTERMEDIARY_FLOOR = 95.0


def found(machine: vm.Machine, key: str, *more: str) -> str:
    """ausearch reads the log files (not ssh's standard input)."""
    answer = machine.run("ausearch", "--input-logs", "-k", key, *more)
    return answer.stdout


@pytest.fixture(scope="module")
def server(machine: vm.Machine) -> vm.Machine:
    """The VM as the example's file server after base and endpoint (as the server test of
    test_vm_endpoint.py leaves it: converged here only when run alone). The tests that change
    variables come last and leave them changed."""
    ensure_server(machine)
    return machine


def test_audit_records_shadow_writes_nc_and_module_loads(server):
    machine = server
    assert machine.run("python3", "-c", "open('/etc/shadow', 'a').close()").returncode == 0
    assert machine.run("nc", "-h").returncode in (0, 1)
    assert machine.run("modprobe", "dummy").returncode == 0
    machine.run("modprobe", "-r", "dummy")
    assert "/etc/shadow" in found(machine, "identity", "-f", "/etc/shadow")
    assert "nc.openbsd" in found(machine, "network_tools")
    assert 'name="dummy"' in found(machine, "modules", "-m", "KERN_MODULE")
    # The same records in the journal (its audit transport), where the event shipper reads them
    # for the collector (kastro.monitoring.events): auditd's own files stay root's.
    journal = machine.run("journalctl", "_TRANSPORT=audit", "--no-pager", "-o", "cat").stdout
    assert 'key="identity"' in journal and "/etc/shadow" in journal, journal[-1500:]


def wait_inactive(machine: vm.Machine, unit: str, limit: float) -> float:
    """Until a oneshot unit has finished (it is "activating" while it runs, not "active")."""
    started = time.monotonic()
    while True:
        state = machine.run("systemctl", "show", "-p", "ActiveState", "--value", unit)
        if state.stdout.strip() not in ("activating", "active", "deactivating", "reloading"):
            break
        assert time.monotonic() - started < limit, f"{unit} still running after {limit} s"
        time.sleep(5)
    return time.monotonic() - started


def test_openscap_anssi_scores_and_every_failure_is_waived(server):
    machine = server
    wait_inactive(machine, "kastro-aide-init.service", 1200)  # the scan wants a baseline
    datastream = scap.datastream(ROOT / scap.STATE)
    machine.put(datastream, "/root/ssg-debian12-ds.xml")
    tailoring = machine.directory / "tailoring.xml"
    tailoring.write_text(scap.tailoring("anssi_bp28_enhanced"), encoding="utf-8")
    machine.put(tailoring, "/root/tailoring.xml")
    started = time.monotonic()
    # 0: every rule passed, 2: some failed; anything else is the scanner's own failure. Once
    # more in that case: a CI run saw oscap 1.3.7's probe_worker segfault in libopenscap (a
    # NULL read) 480 s into a scan that runs cleanly on the same VM otherwise.
    for attempt in (1, 2):
        scan = machine.run(
            "oscap", "xccdf", "eval", "--tailoring-file", "/root/tailoring.xml",
            "--profile", scap.tailored_profile("anssi_bp28_enhanced"),
            "--results", "/root/enhanced.xml", "/root/ssg-debian12-ds.xml", timeout=1800,
        )  # fmt: skip
        kernel = machine.run("sh", "-c", "dmesg | tail -5").stdout
        if scan.returncode in (0, 2):
            break
        print(f"\noscap failed (attempt {attempt}, exit {scan.returncode}): {kernel}")
    assert scan.returncode in (0, 2), f"oscap {scan.returncode}: {scan.stderr[-1500:]} {kernel}"
    results = machine.get("/root/enhanced.xml")
    enhanced = scap.score(results)
    intermediary = scap.score(results, scap.profile_rules(datastream, "anssi_bp28_intermediary"))
    print(
        f"\nANSSI-BP-028 enhanced {enhanced.percent:.1f} % of {enhanced.applicable}, "
        f"intermediary {intermediary.percent:.1f} % of {intermediary.applicable} "
        f"(scan {time.monotonic() - started:.0f} s)"
    )
    waivers = yaml.safe_load(WAIVERS.read_text(encoding="utf-8"))["waivers"]
    check = scap.check_waivers(enhanced.failed, waivers, dt.date.today())
    assert not check.unwaived, f"failures nobody waived: {check.unwaived}"
    assert not check.expired, f"waivers past their review date: {check.expired}"
    assert not check.unused, f"waivers for rules that pass: {check.unused}"
    assert enhanced.percent >= ENHANCED_FLOOR
    assert intermediary.percent >= INTERMEDIARY_FLOOR


def test_aide_reports_a_planted_binary_and_not_kastros_own_changes(server):
    machine = server
    took = wait_inactive(machine, "kastro-aide-init.service", 1200)
    print(f"\nAIDE baseline ready {took:.0f} s after the converge")
    assert machine.run("test", "-s", "/var/lib/aide/aide.db").returncode == 0
    # What the earlier tests did (a user added and removed, ...) becomes the baseline, as an
    # admin does after looking: this test's own changes are then the only ones.
    assert machine.run("kastro-aide", "accept").returncode == 0
    metrics = "/var/lib/prometheus/node-exporter/kastro_aide.prom"
    planted = machine.run("sh", "-c", "printf x >> /usr/bin/pinky")
    assert planted.returncode == 0
    converge_server(server, {"endpoint_session_timeout": 900})  # a Kastro change
    try:
        machine.run("systemctl", "start", "kastro-aide-check.service", timeout=1200)
        text = machine.run("cat", metrics).stdout
        assert "kastro_aide_check_success 1" in text
        assert 'kastro_aide_files{change="changed",origin="foreign"} 1' in text, text
        # The check sees what an admin's `kastro-aide accept` saw (a sandbox that hid
        # /usr/lib/modules once made 1357 files "removed").
        assert 'kastro_aide_files{change="removed",origin="foreign"} 0' in text, text
        assert 'kastro_aide_files{change="added",origin="foreign"} 0' in text, text
        ours = re.search(r'kastro_aide_files\{change="changed",origin="kastro"\} (\d+)', text)
        assert ours and int(ours.group(1)) >= 1, text  # the profile.d file, at least
        shown = machine.run("kastro-aide", "check").stdout
        assert "/usr/bin/pinky" in shown and "kastro-endpoint.sh" not in shown
    finally:
        machine.run("kastro-aide", "accept")


def test_clamav_finds_every_test_file_with_the_municipal_signatures(server):
    """The scheduled scan's own unit, run now: every file of clamav-testfiles planted in a
    share is reported in the metrics and the EVE log; freshclam never ran (no mirror named)."""
    machine = server
    share = "/srv/share/downloads"
    testfiles = "/usr/share/clamav-testfiles"
    planted = machine.run("sh", "-c", f"mkdir -p {share} && cp {testfiles}/* {share}")
    assert planted.returncode == 0
    expected = int(machine.run("sh", "-c", "ls /usr/share/clamav-testfiles | wc -l").stdout)
    try:
        started = time.monotonic()
        done = machine.run("systemctl", "start", "kastro-clamav-scan.service", timeout=600)
        print(f"\nClamAV scan of the planted share: {time.monotonic() - started:.0f} s")
        assert done.returncode == 0, done.stderr
        metrics = machine.run("cat", "/var/lib/prometheus/node-exporter/kastro_clamav.prom").stdout
        assert f"kastro_clamav_infected_files {expected}\n" in metrics
        assert "kastro_clamav_scan_success 1\n" in metrics
        eve = machine.run("cat", "/var/log/kastro-clamav/eve.json").stdout.splitlines()
        assert len([line for line in eve if share in line]) == expected
        debian = machine.run("systemctl", "is-enabled", "clamav-freshclam.service")
        assert debian.stdout.strip() == "masked"
        assert machine.run("systemctl", "is-enabled", "kastro-freshclam.timer").returncode != 0
    finally:
        machine.run("rm", "-rf", "/srv/share", "/var/log/kastro-clamav/eve.json")


# The test VM's layout (kastro.lab.vm.LAYOUT, /tmp a tmpfs): what each mount point must refuse.
NOEXEC = ("/tmp", "/var/tmp", "/dev/shm", "/home", "/var/log", "/boot")
NOSUID = ("/srv", "/opt", "/var", *NOEXEC)


def mount_options(machine: vm.Machine) -> dict[str, set[str]]:
    table = machine.run("findmnt", "-rn", "-o", "TARGET,OPTIONS").stdout
    return {target: set(options.split(",")) for target, options in
            (line.split(" ", 1) for line in table.splitlines())}  # fmt: skip


def test_the_file_systems_refuse_programs_setuid_and_devices_where_anssi_says(server):
    """R28 from the attacker's side: a program dropped where users can write does not run,
    a setuid copy does not raise privileges, a device node made on a data file system does
    not open (even for root); the options are in fstab for the next boot too."""
    machine = server
    live = mount_options(machine)
    for point in NOSUID:
        assert {"nodev", "nosuid"} <= live[point], (point, live[point])
    assert "nodev" in live["/usr"] and "noexec" not in live["/var"]  # dpkg's scripts
    try:
        for point in ("/tmp", "/var/tmp", "/dev/shm"):  # where any user may write
            drop = f"cp /usr/bin/true {point}/dropped && {point}/dropped"
            dropped = machine.run("runuser", "-u", "nobody", "--", "sh", "-c", drop)
            assert dropped.returncode != 0 and "Permission denied" in dropped.stderr, point
        raised = machine.run("sh", "-c", "install -m 4755 /usr/bin/id /srv/id-suid && "
                             "runuser -u nobody -- /srv/id-suid -u")  # fmt: skip
        assert raised.stdout.strip() == "65534", raised.stdout + raised.stderr  # not 0: nosuid
        device = machine.run("sh", "-c", "mknod /home/mem c 1 1 && head -c 1 /home/mem")
        assert device.returncode != 0 and "Permission denied" in device.stderr, device.stderr
    finally:
        machine.run("rm", "-f", "/tmp/dropped", "/var/tmp/dropped", "/dev/shm/dropped",
                    "/srv/id-suid", "/home/mem")  # fmt: skip
    fstab = machine.run("findmnt", "--fstab", "-rn", "-o", "TARGET,OPTIONS").stdout
    for point in NOSUID:
        assert any(line.startswith(f"{point} ") and "nosuid" in line
                   for line in fstab.splitlines()), (point, fstab)  # fmt: skip


def pamtester(
    machine: vm.Machine, service: str, user: str, secret: str, *operations: str
) -> subprocess.CompletedProcess[str]:
    """One PAM stack of the VM run by pamtester for `user`, the password on its input (the
    tests' own fixed words: no quote in them)."""
    return machine.run(
        "sh", "-c", f"echo '{secret}' | pamtester {service} {user} {' '.join(operations)}"
    )


def test_faillock_locks_after_the_failures_and_unlocks_after_the_time(server):
    machine = server
    overlay = {"endpoint_faillock_deny": 3, "endpoint_faillock_unlock_time": 15}
    converge_server(machine, overlay)
    user, password = "kastro-probe", "Vouli-Ploia-2026!x"  # passes pwquality
    machine.run("useradd", "-m", user)

    def login(secret: str) -> int:
        return pamtester(machine, "login", user, secret, "authenticate").returncode

    try:
        # Through PAM's password stack: pwquality with its dictionary must accept it.
        weak = machine.run("sh", "-c", f"echo '{user}:municipality1' | chpasswd")
        assert weak.returncode != 0, "pwquality must refuse a weak password"
        done = machine.run("sh", "-c", f"echo '{user}:{password}' | chpasswd")
        assert done.returncode == 0, done.stderr
        assert login(password) == 0
        for _ in range(3):
            assert login("wrong password") != 0
        assert login(password) != 0, "the right password must be refused while locked"
        time.sleep(16)
        assert login(password) == 0, "the lock must open after endpoint_faillock_unlock_time"
    finally:
        machine.run("userdel", "-r", user)
        # pam_faillock's tally belongs to the user: after userdel it would be unowned.
        machine.run("rm", "-f", f"/var/log/faillock/{user}")


def ssh_as(machine: vm.Machine, user: str, *options: str) -> subprocess.CompletedProcess[str]:
    """A login attempt from this machine straight to the VM's sshd (not through the admin's
    sudo), with the admin's key unless the options say otherwise."""
    argv = [*machine.login_argv(user, "-o", "ConnectTimeout=10", *options), "true"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_nothing_locks_the_admin_out_after_a_reboot(server):
    """The hardened server rebooted as an admin would: the admin still logs in by key and sudo
    works; the settings hold from boot (sysctl, audit rules, the blacklist); password and root
    SSH are refused; the PAM stacks of the console login, sshd, su and sudo let a valid local
    user through (pamtester); no unit failed at boot."""
    machine = server
    took = vm.reboot(machine)
    print(f"\nrebooted: SSH answered again after {took:.0f} s")
    assert machine.run("true").returncode == 0  # the admin's key, then sudo -n
    # What event shipping appends to each auth line: on a real host (not in a container)
    # journald records the sender's executable, which the sender cannot choose.
    login = machine.run("journalctl", "-o", "verbose", "--no-pager", "-n", "1",
                        "SYSLOG_IDENTIFIER=sshd", "-g", "^Accepted publickey").stdout  # fmt: skip
    assert "_EXE=/usr/sbin/sshd" in login and "_UID=0" in login, login[-1500:]
    assert machine.run("sysctl", "-n", "kernel.kptr_restrict").stdout.strip() == "2"
    assert "-k identity" in machine.run("auditctl", "-l").stdout
    assert machine.run("modprobe", "cramfs").returncode != 0
    live = mount_options(machine)
    assert all({"nodev", "nosuid", "noexec"} <= live[point] for point in NOEXEC), live
    failed = machine.run("systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
    assert not failed.strip(), f"units that failed at boot: {failed}"
    password = ssh_as(machine, vm.ADMIN, "-o", "PubkeyAuthentication=no",
                      "-o", "PreferredAuthentications=password,keyboard-interactive")  # fmt: skip
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr
    root = ssh_as(machine, "root")
    assert root.returncode == 255 and "Permission denied" in root.stderr, root.stderr
    user, secret = "kastro-console", "Vouli-Ploia-2026!x"
    machine.run("useradd", "-m", user)
    try:
        done = machine.run("sh", "-c", f"echo '{user}:{secret}' | chpasswd")
        assert done.returncode == 0, done.stderr
        for service in ("login", "sshd", "su", "sudo"):
            checked = pamtester(machine, service, user, secret, "authenticate", "acct_mgmt")
            assert checked.returncode == 0, f"{service}: {checked.stdout} {checked.stderr}"
    finally:
        machine.run("userdel", "-r", user)
        machine.run("rm", "-f", f"/var/log/faillock/{user}")
