"""The login, password and session files the endpoint role writes, and their checks."""

from __future__ import annotations

import pytest

from kastro.endpoint.accounts import accounts_state, files, numbers, pam_profiles
from kastro.endpoint.profile import EndpointConfigError


def test_defaults_give_the_anssi_values() -> None:
    written = files({})
    assert "deny = 3" in written["/etc/security/faillock.conf"]
    assert "unlock_time = 900" in written["/etc/security/faillock.conf"]
    assert "minlen = 15" in written["/etc/security/pwquality.conf"]
    assert "typeset -xr TMOUT=600" in written["/etc/profile.d/kastro-endpoint.sh"]
    assert "umask 077" in written["/etc/profile.d/kastro-endpoint.sh"]
    assert "* hard core 0" in written["/etc/security/limits.d/kastro-endpoint.conf"]


def test_pam_profiles_have_no_empty_passwords_and_faillock_around_unix() -> None:
    profiles = pam_profiles(numbers({}))
    assert "nullok" not in profiles["kastro-unix"]
    assert "remember=2" in profiles["kastro-unix"]
    assert "pam_faillock.so preauth" in profiles["kastro-faillock-notify"]
    assert "Priority: 1024" in profiles["kastro-faillock-notify"]
    assert "pam_faillock.so authfail" in profiles["kastro-faillock"]
    assert "Priority: 0" in profiles["kastro-faillock"]
    none_remembered = pam_profiles(numbers({"endpoint_password_remember": 0}))
    assert "remember=" not in none_remembered["kastro-unix"]


def test_sudoers_file_is_validated_and_private() -> None:
    entries = {e["dest"]: e for e in accounts_state({})["files"]}
    sudoers = entries["/etc/sudoers.d/kastro-endpoint"]
    assert sudoers["mode"] == "0440" and sudoers["validate"] == "visudo -cf %s"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("endpoint_faillock_deny", 0),
        ("endpoint_faillock_deny", "3"),
        ("endpoint_faillock_deny", True),
        ("endpoint_faillock_unlock_time", 5),
        ("endpoint_password_min_length", 8),
        ("endpoint_session_timeout", 10**6),
        ("endpoint_umask", "022"),
        ("endpoint_umask", "077; rm -rf /"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(EndpointConfigError, match=name):
        accounts_state({name: value})


def test_login_defs_ages_new_passwords_both_ways() -> None:
    from kastro.endpoint.accounts import login_defs

    wanted = login_defs({})
    assert wanted["PASS_MAX_DAYS"] == "365" and wanted["PASS_MIN_DAYS"] == "1"
    assert wanted["ENCRYPT_METHOD"] == "YESCRYPT"
