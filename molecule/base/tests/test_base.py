"""What the base role must leave on a host (testinfra over `podman exec`)."""

import pytest

MARIA_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJv0M0rJ2Yl7mYb5p1yqkQ3W7r0x9n3E3uXo1b7w8V2K"
    " maria@cityhall"
)


def test_hostname_and_hosts_file(host):
    assert host.check_output("hostname") == "instance"
    hosts = host.file("/etc/hosts").content_string
    assert "127.0.1.1\tinstance.demo.kastro.test instance" in hosts
    assert "10.10.1.10\tfileserver fileserver.demo.kastro.test" in hosts


def test_timezone_is_athens(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Athens"
    assert host.file("/etc/timezone").content_string.strip() == "Europe/Athens"
    # Athens is UTC+2 or UTC+3 (summer time), never UTC.
    assert host.check_output("date +%z") in {"+0200", "+0300"}


def test_chrony_configured_but_not_running_in_a_container(host):
    assert host.package("chrony").is_installed
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "pool gr.pool.ntp.org iburst maxsources 4" in conf
    # The container's clock belongs to the machine it runs on.
    assert not host.service("chrony").is_running


def test_journal_is_persistent_and_bounded(host):
    assert host.file("/var/log/journal").is_directory
    conf = host.file("/etc/systemd/journald.conf.d/kastro.conf").content_string
    assert "Storage=persistent" in conf
    assert "SystemMaxUse=1G" in conf
    # journald picked it up: the live journal is written under /var/log/journal/<machine-id>.
    assert host.run("journalctl --header | grep -q '/var/log/journal/'").rc == 0


def test_unattended_security_upgrades(host):
    assert host.package("unattended-upgrades").is_installed
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert "label=Debian-Security" in dump
    # The configuration parses for unattended-upgrade itself.
    assert host.run("unattended-upgrade --dry-run --debug 2>&1 | grep -q 'Allowed origins'").rc == 0


def test_admin_account_with_key_and_sudo(host):
    maria = host.user("maria")
    assert maria.exists
    assert "kastro-admins" in maria.groups
    assert maria.password in {"!", "!*"}  # locked: keys only
    keys = host.file("/home/maria/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert keys.content_string.strip() == MARIA_KEY
    assert host.run("sudo -l -U maria").stdout.count("NOPASSWD: ALL") == 1
    assert host.run("visudo -c").rc == 0


def test_removed_admin_is_gone(host):
    assert not host.user("former").exists
    assert not host.file("/home/former").exists


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitrootlogin", "without-password"),  # sshd -T spells prohibit-password this way
        ("pubkeyauthentication", "yes"),
        ("x11forwarding", "no"),
        ("maxauthtries", "3"),
        ("banner", "/etc/issue.net"),
    ],
)
def test_sshd_effective_settings(host, option, value):
    effective = host.check_output("sshd -T")
    assert f"{option} {value}" in effective.splitlines()


def test_sshd_allows_only_admin_and_listed_groups(host):
    effective = host.check_output("sshd -T").splitlines()
    groups = [line.split(" ", 1)[1] for line in effective if line.startswith("allowgroups ")]
    assert groups == ["root", "kastro-admins", "sftp-users"]


def test_sshd_running_and_refuses_passwords(host):
    assert host.service("ssh").is_running
    assert host.file("/etc/ssh/sshd_config").mode == 0o600
    # Ask the live daemon which methods it offers: publickey only.
    probe = host.run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o PreferredAuthentications=none -p 22 nobody@127.0.0.1 true"
    )
    assert probe.rc != 0
    assert "Permission denied (publickey)" in probe.stderr


def test_login_banner(host):
    for path in ("/etc/issue", "/etc/issue.net"):
        assert "Authorised use only" in host.file(path).content_string
