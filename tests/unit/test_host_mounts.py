"""kastro-mounts: which fstab lines get which options, what is remounted, what is left alone,
and the controller's table with the admin's overrides (kastro.endpoint.mounts). On a kernel of
its own (the partitioned test VM) tests/vm checks the options live and from the attacker's
side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kastro.endpoint.mounts import ANSSI, mount_options
from kastro.endpoint.profile import EndpointConfigError
from kastro.host.mounts import MountsError, checked_want, live_options, main, plan

FSTAB = """\
# /etc/fstab: static file system information.
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=0f1e / ext4 errors=remount-ro 0 1
UUID=2b3c  /var   ext4  defaults,exec  0 2
  LABEL=home /home ext4 rw,relatime 0 2
/dev/vdd /srv\\040data ext4 defaults 0 2
UUID=9a8b none swap sw 0 0
"""
# /proc/self/mountinfo of the same host: /var and /home mounted, /var without nodev.
MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw
24 23 0:22 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
30 22 254:2 / /var rw,relatime shared:9 - ext4 /dev/vdb rw
31 22 254:3 / /home rw,nosuid,nodev,noexec,relatime shared:10 - ext4 /dev/vdc rw
32 22 254:4 / /srv\\040data rw,relatime shared:11 - ext4 /dev/vdd rw
"""
WANT = {"/var": ("nodev", "nosuid"), "/home": ("nodev", "nosuid", "noexec"),
        "/dev/shm": ("nodev", "nosuid", "noexec"), "/srv data": ("nodev",),
        "/boot": ("nodev",)}  # fmt: skip


def test_options_are_added_and_nothing_else_of_fstab_changes() -> None:
    todo = plan(FSTAB, MOUNTINFO, WANT)
    lines = todo.fstab.splitlines()
    old = FSTAB.splitlines()
    assert lines[:3] == old[:3] and lines[6] == old[6]  # comments, root and swap as they were
    assert lines[3] == "UUID=2b3c  /var   ext4  defaults,exec,nodev,nosuid  0 2"
    assert lines[4] == "  LABEL=home /home ext4 rw,relatime,nodev,nosuid,noexec 0 2"
    assert lines[5] == "/dev/vdd /srv\\040data ext4 defaults,nodev 0 2"
    assert lines[7] == "tmpfs\t/dev/shm\ttmpfs\tdefaults,nodev,nosuid,noexec\t0\t0"
    assert todo.in_fstab == ["/var", "/home", "/srv data", "/dev/shm"]


def test_only_live_mounts_that_lack_an_option_are_remounted_and_absent_ones_are_said() -> None:
    todo = plan(FSTAB, MOUNTINFO, WANT)
    assert todo.remount == {"/var": ("nodev", "nosuid"), "/dev/shm": ("noexec",),
                            "/srv data": ("nodev",)}  # fmt: skip
    assert todo.absent == ["/boot"]


def test_an_option_that_undoes_a_wanted_one_is_removed() -> None:
    todo = plan("/dev/vdb /var ext4 defaults,dev,suid,exec 0 2\n", "", {"/var": ("nodev",)})
    assert todo.fstab == "/dev/vdb /var ext4 defaults,suid,exec,nodev 0 2\n"


def test_a_second_run_has_nothing_to_do() -> None:
    first = plan(FSTAB, MOUNTINFO, WANT)
    remounted = MOUNTINFO.replace("/var rw,relatime", "/var rw,nodev,nosuid,relatime")
    remounted = remounted.replace("/dev/shm rw,nosuid,nodev", "/dev/shm rw,nosuid,nodev,noexec")
    remounted = remounted.replace("/srv\\040data rw,relatime", "/srv\\040data rw,nodev")
    again = plan(first.fstab, remounted, WANT)
    assert again.fstab == first.fstab
    assert not again.in_fstab and not again.remount


def test_a_mount_made_by_a_unit_is_reported_not_remounted() -> None:
    mountinfo = "40 22 0:40 / /tmp rw,nosuid,nodev shared:20 - tmpfs tmpfs rw\n"
    todo = plan("", mountinfo, {"/tmp": ("nodev", "nosuid", "noexec")})
    assert todo.unlisted == ["/tmp"] and not todo.remount and not todo.in_fstab


def test_the_last_mount_of_a_point_is_the_one_in_effect() -> None:
    stacked = MOUNTINFO + "50 30 0:50 / /var rw,nodev,nosuid shared:30 - tmpfs tmpfs rw\n"
    assert live_options(stacked)["/var"] >= {"nodev", "nosuid"}
    assert live_options(MOUNTINFO)["/srv data"] == {"rw", "relatime"}


@pytest.mark.parametrize(
    "want",
    [["/var"], {"/": ["nodev"]}, {"var": ["nodev"]}, {"/var/../etc": ["nodev"]},
     {"/var": ["nodev", "remount,exec"]}, {"/var": "nodev"}, {"/var;reboot": ["nodev"]},
     {"/VAR": ["nodev"]}],
)  # fmt: skip
def test_a_want_that_could_reach_mount_otherwise_is_refused(want: object) -> None:
    with pytest.raises(MountsError):
        checked_want(want)


def test_the_program_in_check_mode_writes_nothing(tmp_path: Path, capsys) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    want = {p: list(o) for p, o in WANT.items() if p != "/srv data"}  # no space: checked_want
    argv = ["--want", json.dumps(want), "--check",
            "--fstab", str(fstab), "--mountinfo", str(mountinfo)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["changed"] is True and report["remounted"] == ["/dev/shm", "/var"]
    assert fstab.read_text() == FSTAB


def test_the_controller_table_is_anssis_and_an_override_changes_one_point() -> None:
    assert mount_options({})["/tmp"] == ["nodev", "nosuid", "noexec"]
    assert "noexec" not in mount_options({})["/var"]  # dpkg runs scripts from /var/lib/dpkg
    assert set(mount_options({})) == set(ANSSI)
    changed = mount_options({"endpoint_mount_options": {"/home": ["nodev", "nosuid"], "/srv": []}})
    assert changed["/home"] == ["nodev", "nosuid"] and "/srv" not in changed


@pytest.mark.parametrize(
    "value", [["/home"], {"/home": ["ro"]}, {"/": ["nodev"]}, {"/home": "nodev"}, "nodev"]
)
def test_a_bad_override_names_the_variable_and_the_fix(value: object) -> None:
    with pytest.raises(EndpointConfigError, match="endpoint_mount_options") as error:
        mount_options({"endpoint_mount_options": value})
    assert "nodev, nosuid, noexec" in str(error.value) or "mapping" in str(error.value)
