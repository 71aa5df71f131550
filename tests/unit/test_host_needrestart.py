"""kastro-needrestart's reading of needrestart's batch output (the format of Debian 12's
needrestart 3.6, `needrestart -b -r l`) and its metrics."""

from __future__ import annotations

from kastro.host.needrestart import metrics_text, parse_batch

BATCH = """NEEDRESTART-VER: 3.6
NEEDRESTART-KCUR: 6.1.0-25-cloud-amd64
NEEDRESTART-KEXP: 6.1.0-28-cloud-amd64
NEEDRESTART-KSTA: 3
NEEDRESTART-SVC: ssh.service
NEEDRESTART-SVC: systemd-journald.service
NEEDRESTART-SVC: ssh.service
NEEDRESTART-SVC: evil"} 1\\nkastro_needrestart_services 0
NEEDRESTART-SESS: kastro @ session #4
"""


def test_services_kernel_and_sessions_are_read() -> None:
    report = parse_batch(BATCH, 0)
    assert report.ok
    assert report.services == ["ssh.service", "systemd-journald.service"]
    assert report.kernel_status == 3
    assert report.sessions == 1


def test_a_name_that_could_break_the_metrics_file_is_dropped() -> None:
    text = metrics_text(parse_batch(BATCH, 0), 1000.0)
    assert "evil" not in text
    assert 'kastro_needrestart_service{service="ssh.service"} 1\n' in text
    assert "kastro_needrestart_services 2\n" in text
    assert "kastro_needrestart_kernel_status 3\n" in text


def test_a_failed_run_is_reported_as_failed() -> None:
    text = metrics_text(parse_batch("", 1), 1000.0)
    assert "kastro_needrestart_success 0\n" in text
