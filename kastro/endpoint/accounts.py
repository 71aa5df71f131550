"""Logins, passwords, sessions and core dumps: the files the endpoint role writes for them.

PAM is changed the Debian way: profiles in /usr/share/pam-configs that `pam-auth-update`
merges into /etc/pam.d/common-*, so a package upgrade or an admin's own profile keeps working.
`kastro-unix` replaces Debian's `unix` profile with the same lines minus `nullok` (no empty
passwords) plus `remember`; the two faillock profiles put
`pam_faillock.so preauth` before and `authfail` after pam_unix (the CIS Debian layout).

Root is never locked by faillock (`even_deny_root` is not set): the console stays the way back
in. Passwords are refused by sshd anyway (base role); the counts and the lock apply to console
and sudo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.endpoint.profile import EndpointConfigError

GENERATED = "# Kastro endpoint (generated; kastro.endpoint.accounts): edit the inventory instead."

# name: (default, lowest, highest, what it is)
NUMBERS: dict[str, tuple[int, int, int, str]] = {
    "endpoint_faillock_deny": (3, 1, 20, "failed logins before the account is locked"),
    "endpoint_faillock_unlock_time": (900, 10, 86400, "seconds until a locked account opens"),
    "endpoint_faillock_interval": (900, 10, 86400, "seconds over which failures are counted"),
    "endpoint_password_min_length": (15, 12, 128, "characters"),
    "endpoint_password_remember": (2, 0, 24, "earlier passwords that cannot be reused"),
    "endpoint_session_timeout": (600, 60, 86400, "seconds an idle shell stays open"),
    "endpoint_root_password_max_days": (365, 1, 99999, "days"),
}
UMASKS = ("077", "027")
FAILLOCK_DIR = "/var/log/faillock"  # kept across reboots (/run would forget a lock)


def numbers(variables: Mapping[str, Any]) -> dict[str, int]:
    found = {}
    for name, (default, low, high, what) in NUMBERS.items():
        value = variables.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise EndpointConfigError(
                f"{name}: {value!r} is not a whole number from {low} to {high} ({what})"
            )
        found[name.removeprefix("endpoint_")] = value
    return found


def umask(variables: Mapping[str, Any]) -> str:
    value = str(variables.get("endpoint_umask", "077"))
    if value not in UMASKS:
        raise EndpointConfigError(
            f"endpoint_umask: {value!r} is not one of {', '.join(UMASKS)} "
            "(077: files private to their owner; 027: readable by the owner's group)"
        )
    return value


def pam_profiles(n: Mapping[str, int]) -> dict[str, str]:
    """/usr/share/pam-configs/NAME: content."""
    remember = f" remember={n['password_remember']}" if n["password_remember"] else ""
    # yescrypt at Debian's default cost (5): ANSSI's rounds=11 makes every password check take
    # about 1 GiB of memory (a 1 GiB host refused every password change; waived).
    unix_password = f"pam_unix.so obscure use_authtok try_first_pass yescrypt{remember}"
    return {
        "kastro-unix": _profile(
            "Kastro: Unix authentication, no empty passwords, old passwords remembered",
            256,
            ("Auth", "Primary", "[success=end default=ignore]\tpam_unix.so try_first_pass"),
            (
                "Account",
                "Primary",
                "[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so",
            ),
            ("Session", "Additional", "required\tpam_unix.so"),
            ("Password", "Primary", f"[success=end default=ignore]\t{unix_password}"),
        ),
        "kastro-faillock": _profile(
            "Kastro: count failed logins (pam_faillock)",
            0,
            (
                "Auth",
                "Primary",
                "[default=die]\tpam_faillock.so authfail\n\tsufficient\tpam_faillock.so authsucc",
            ),
        ),
        "kastro-faillock-notify": _profile(
            "Kastro: refuse a locked account, reset its count after a success (pam_faillock)",
            1024,
            ("Auth", "Primary", "required\tpam_faillock.so preauth"),
            ("Account", "Primary", "required\tpam_faillock.so"),
        ),
    }


def _profile(name: str, priority: int, *stacks: tuple[str, str, str]) -> str:
    """A pam-auth-update profile (kastro-unix: the role disables Debian's `unix` first)."""
    lines = [f"Name: {name}", "Default: yes", f"Priority: {priority}"]
    for stack, kind, line in stacks:
        initial = line.replace(" use_authtok", "").replace(" try_first_pass", "")
        lines += [f"{stack}-Type: {kind}", f"{stack}:", f"\t{line}", f"{stack}-Initial:",
                  f"\t{initial}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def files(variables: Mapping[str, Any]) -> dict[str, str]:
    """Path: content of every file this part writes (mode 0644 unless `MODES` says)."""
    n = numbers(variables)
    mask = umask(variables)
    timeout = n["session_timeout"]
    found = {f"/usr/share/pam-configs/{name}": text for name, text in pam_profiles(n).items()}
    found |= {
        "/etc/security/faillock.conf": _lines(
            f"deny = {n['faillock_deny']}",
            f"fail_interval = {n['faillock_interval']}",
            f"unlock_time = {n['faillock_unlock_time']}",
            f"dir = {FAILLOCK_DIR}",
            "audit",
        ),
        "/etc/security/pwquality.conf": _lines(
            f"minlen = {n['password_min_length']}",
            "minclass = 4",
            "dcredit = -1",
            "ucredit = -1",
            "lcredit = -1",
            "ocredit = -1",
            "maxrepeat = 3",
            "dictcheck = 1",
            "enforcing = 1",
            "retry = 3",
            "enforce_for_root",  # a password root sets for a user is checked too
        ),
        "/etc/profile.d/kastro-endpoint.sh": _lines(
            f"umask {mask}", f"typeset -xr TMOUT={timeout}"
        ),
        "/etc/security/limits.d/kastro-endpoint.conf": _lines("* hard core 0"),
        "/etc/systemd/coredump.conf.d/kastro-endpoint.conf": _lines(
            "[Coredump]", "Storage=none", "ProcessSizeMax=0"
        ),
        "/etc/sudoers.d/kastro-endpoint": _lines(
            "Defaults ignore_dot",
            "Defaults use_pty",
            "Defaults umask=0077",
            "Defaults logfile=/var/log/sudo.log",
        ),
        "/etc/securetty": "",  # no direct root login on a terminal (ANSSI R32 spirit)
    }
    return found


MODES = {"/etc/sudoers.d/kastro-endpoint": "0440", "/etc/securetty": "0600"}
VALIDATE = {"/etc/sudoers.d/kastro-endpoint": "visudo -cf %s"}


def login_defs(variables: Mapping[str, Any]) -> dict[str, str]:
    """Settings of /etc/login.defs (a Debian conffile: changed line by line, not replaced)."""
    return {
        "UMASK": umask(variables),
        "ENCRYPT_METHOD": "YESCRYPT",
        "HOME_MODE": "0750",
        "PASS_MAX_DAYS": "365",  # new local accounts: a password set must change yearly
        # ...and not again the same day: cycling through new passwords to get an old one back
        # past pwhistory's memory (endpoint_password_remember) takes days, not seconds.
        "PASS_MIN_DAYS": "1",
    }


def _lines(*lines: str) -> str:
    return "\n".join((GENERATED, *lines)) + "\n"


def accounts_state(variables: Mapping[str, Any]) -> dict[str, Any]:
    wanted = files(variables)
    entries = [
        {
            "dest": path,
            "mode": MODES.get(path, "0644"),
            "content": content,
            **({"validate": VALIDATE[path]} if path in VALIDATE else {}),
        }
        for path, content in wanted.items()
    ]
    return {
        "files": entries,
        "pam_profiles": sorted(pam_profiles(numbers(variables))),
        "login_defs": login_defs(variables),
        "umask": umask(variables),
        "root_password_max_days": numbers(variables)["root_password_max_days"],
        "faillock_dir": FAILLOCK_DIR,
    }
