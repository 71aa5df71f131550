"""plugins/action/kastro_apt.py: dpkg first, ansible.builtin.apt only when something is missing.

The action is run by the real ansible-playbook against this machine: with packages that are
installed here (apt is not asked: no cache opened, no cache refreshed), and with a package
that exists nowhere (apt is asked, in check mode, and says so). The two pure functions are
tested on dpkg-query's own output.
"""

import importlib.util
from pathlib import Path

import pytest

from tests.ansible_helpers import run_task

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "kastro_apt", ROOT / "plugins" / "action" / "kastro_apt.py"
)
assert SPEC and SPEC.loader
kastro_apt = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(kastro_apt)


def run(tmp_path: Path, args: dict, *flags: str) -> dict:
    """The action's result for these task arguments on localhost."""
    task = "    - name: The task under test\n      kastro_apt: '{{ args }}'\n"
    return run_task(tmp_path, task, {"args": args}, *flags)


def test_installed_packages_are_not_handed_to_apt(tmp_path):
    result = run(tmp_path, {"name": ["dpkg", "bash"], "state": "present", "update_cache": True})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["msg"] == "installed already: dpkg, bash"
    assert "cache_updated" not in result  # ansible.builtin.apt always reports this


def test_a_missing_package_is_handed_to_apt(tmp_path):
    result = run(tmp_path, {"name": ["bash", "kastro-no-such-package"]}, "--check")
    assert result.get("failed") is True
    assert "kastro-no-such-package" in result["msg"]
    assert "installed already" not in result["msg"]


def test_check_mode_with_everything_installed_changes_nothing(tmp_path):
    result = run(tmp_path, {"name": "dpkg"}, "--check")
    assert not result.get("failed"), result
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (
            {"name": ["nftables", "python3-prometheus-client"]},
            ["nftables", "python3-prometheus-client"],
        ),
        ({"name": "openvpn", "state": "present"}, ["openvpn"]),
        ({"name": "frr, wireguard-tools"}, ["frr", "wireguard-tools"]),
        ({"pkg": ["libc6"]}, ["libc6"]),
        ({"name": ["nftables"], "state": "latest"}, None),  # apt must compare versions
        ({"name": ["nftables"], "state": "absent"}, None),
        ({"deb": "/tmp/x.deb"}, None),
        ({"name": ["nftables=1.0.6-2"]}, None),  # a version: apt decides
        ({"name": ["nft*"]}, None),
        ({"name": ["nftables:amd64"]}, None),
        ({"name": []}, None),
        ({"upgrade": "dist"}, None),
    ],
)
def test_only_plain_names_to_be_present_are_asked_of_dpkg(args, names):
    assert kastro_apt.wanted(args) == names


def test_only_fully_installed_packages_count():
    output = "ii \tnftables\niU \tfrr\nrc \topenvpn\niF \twireguard-tools\nii \tbash\n"
    assert kastro_apt.installed(output) == {"nftables", "bash"}
    assert kastro_apt.installed("") == set()
