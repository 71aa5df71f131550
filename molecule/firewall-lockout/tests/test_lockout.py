"""Scenario 3: after the refused change the host is reachable with its previous ruleset.

The verifier connecting at all shows that SSH works again; the rest shows that the
previous ruleset is back, that the host did it by itself, and that nothing is left armed.
"""

import json

testinfra_hosts = ["hall-gw"]


def test_previous_ruleset_is_back(host):
    evidence = json.loads(host.file("/root/lockout-test.json").content_string)
    now = host.check_output("sha256sum /etc/kastro/firewall/active.nft").split()[0]
    assert now == evidence["before"], "the confirmed ruleset changed"
    live = host.check_output("nft list chain inet kastro input")
    assert 'iifname "eth0" tcp dport' in live, "the management rule is not in the live ruleset"
    assert "192.0.2.0/24" not in host.check_output("nft list set inet kastro management_v4")


def test_the_host_rolled_back_by_itself(host):
    status = json.loads(host.check_output("kastro-firewall status"))
    assert status["pending"] is None
    assert status["last_rollback"]["reason"] == "the change was not confirmed in time"
    journal = host.check_output("journalctl -u kastro-firewall-rollback --no-pager")
    assert "restored the previous ruleset" in journal
    timers = host.check_output("systemctl list-timers --all --no-legend")
    assert "kastro-firewall-rollback" not in timers


def test_both_messages_say_what_happened(host):
    evidence = json.loads(host.file("/root/lockout-test.json").content_string)
    assert "Nothing was changed on hall-gw" in evidence["precheck"]
    assert "restored its previous ruleset by itself after 20 s" in evidence["lockout"]


def test_the_precheck_holds_for_an_unprivileged_admin_with_sudo(host):
    """Finding 4: the admin logs in as kadmin and becomes root; the precheck still saw the
    controller's address and refused, and the confirmed ruleset is the one from before."""
    message = host.file("/root/lockout-become.txt").content_string
    assert "Nothing was changed on hall-gw" in message
    assert "would not let in" in message
    evidence = json.loads(host.file("/root/lockout-test.json").content_string)
    now = host.check_output("sha256sum /etc/kastro/firewall/active.nft").split()[0]
    assert now == evidence["before"]
