"""Scenario 4: after three refused inputs the running ruleset and its files are unchanged."""

import json

testinfra_hosts = ["hall-gw"]


def test_live_ruleset_and_files_unchanged(host):
    before = host.file("/root/before-invalid.txt").content_string.split("\n")
    now = host.check_output(
        "nft -s list table inet kastro | sha256sum; "
        "sha256sum /etc/kastro/firewall/candidate.nft /etc/kastro/firewall/active.nft"
    ).split("\n")
    assert [line.split()[0] for line in now if line] == [line.split()[0] for line in before if line]


def test_nothing_pending(host):
    status = json.loads(host.check_output("kastro-firewall status"))
    assert status["table_loaded"] and status["pending"] is None
    assert status["last_rollback"] is None
