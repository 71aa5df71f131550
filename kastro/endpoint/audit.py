"""The audit rules every Kastro host loads, compiled on the controller.

Each rule carries a key (`ausearch -k KEY`) that names what it records, and every key is mapped
to the NIS2 Article 21 measure and the CIS Debian 12 / ANSSI-BP-028 recommendation it serves
(`KEYS`), so an auditor can go from a requirement to the records and back. Syscall rules are
written for both ABIs (a 32-bit program on a 64-bit kernel would slip past a b64-only rule).

`endpoint_audit_watch_extra` (a list of absolute paths) adds watched paths per host or group,
checked strictly here; `endpoint_audit_immutable` ends the rules with `-e 2` (a change then
needs a reboot: ANSSI R73 "high").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from kastro.endpoint.profile import EndpointConfigError

# key: (what, NIS2 Art. 21(2) point, CIS Debian 12 / ANSSI reference)
KEYS: dict[str, tuple[str, str, str]] = {
    "logins": ("logins and failed logins", "(i) access control", "CIS 6.3.3.12"),
    "session": ("sessions opened and closed", "(i) access control", "CIS 6.3.3.11"),
    "actions": ("sudo rules changed", "(i) access control", "CIS 6.3.3.1"),
    "privileged": ("programs run with privilege", "(i) access control", "CIS 6.3.3.2-4"),
    "user_emulation": ("a user acting as another", "(i) access control", "CIS 6.3.3.2"),
    "identity": ("accounts and groups changed", "(i) access control", "CIS 6.3.3.8"),
    "time-change": ("system time changed", "(b) incident handling", "CIS 6.3.3.4"),
    "system-locale": ("network configuration changed", "(e) network security", "CIS 6.3.3.5"),
    "modules": ("kernel modules loaded or removed", "(e) network security", "CIS 6.3.3.19"),
    "mounts": ("file systems mounted", "(e) network security", "CIS 6.3.3.10"),
    "perm_mod": ("permissions and owners changed", "(i) access control", "CIS 6.3.3.9"),
    "access": ("access refused to files", "(i) access control", "CIS 6.3.3.7"),
    "delete": ("files deleted or renamed by users", "(i) access control", "CIS 6.3.3.13"),
    "MAC-policy": ("security policy changed", "(e) network security", "CIS 6.3.3.14"),
    "sshd": ("SSH server configuration changed", "(i) access control", "ANSSI R73"),
    "kastro": ("Kastro's configuration and keys changed", "(h) cryptography", "ANSSI R73"),
    "network_tools": ("network tools run (nc, socat, nmap)", "(b) incident handling",
                      "ANSSI R73"),
    "audit": ("audit configuration changed", "(f) effectiveness", "CIS 6.3.3.x / ANSSI R73"),
}  # fmt: skip

WATCHES: dict[str, tuple[str, ...]] = {
    "logins": ("/var/log/lastlog", "/var/log/faillock", "/var/run/faillock"),
    "session": ("/var/run/utmp", "/var/log/wtmp", "/var/log/btmp"),
    "actions": ("/etc/sudoers", "/etc/sudoers.d/", "/var/log/sudo.log"),
    "identity": (
        "/etc/group", "/etc/passwd", "/etc/gshadow", "/etc/shadow", "/etc/security/opasswd",
        "/etc/nsswitch.conf", "/etc/pam.conf", "/etc/pam.d",
    ),
    "time-change": ("/etc/localtime", "/etc/chrony"),
    "system-locale": (
        "/etc/issue", "/etc/issue.net", "/etc/hosts", "/etc/hostname", "/etc/network",
        "/etc/systemd/network", "/etc/nftables.conf",
    ),
    "MAC-policy": ("/etc/apparmor", "/etc/apparmor.d"),
    "sshd": ("/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d"),
    "kastro": (
        "/etc/kastro", "/var/lib/kastro", "/etc/wireguard", "/etc/openvpn", "/etc/frr",
        "/etc/sysctl.d", "/etc/modprobe.d",
    ),
    "audit": ("/etc/audit", "/etc/libaudit.conf"),
}  # fmt: skip
EXECUTED: dict[str, tuple[str, ...]] = {
    "modules": ("/usr/sbin/insmod", "/usr/sbin/rmmod", "/usr/sbin/modprobe", "/usr/bin/kmod"),
    # Plus every setuid/setgid program found on the host (rules_file's `privileged`).
    "privileged": ("/usr/bin/sudo", "/usr/bin/su", "/usr/sbin/usermod"),
    "network_tools": ("/usr/bin/nc.openbsd", "/usr/bin/nc.traditional", "/usr/bin/ncat",
                      "/usr/bin/socat", "/usr/bin/nmap"),
}  # fmt: skip
USER = "-F auid>=1000 -F auid!=unset"
SYSCALLS: tuple[tuple[str, str, str], ...] = (
    # (key, syscalls, filter)
    ("time-change", "adjtimex,settimeofday", ""),
    ("time-change", "clock_settime", "-F a0=0x0"),  # CLOCK_REALTIME only
    ("system-locale", "sethostname,setdomainname", ""),
    ("modules", "init_module,finit_module,delete_module", ""),
    ("mounts", "mount,umount2", USER),
    ("perm_mod", "chmod,fchmod,fchmodat,chown,fchown,fchownat,lchown", USER),
    ("perm_mod", "setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr", USER),
    ("access", "creat,open,openat,truncate,ftruncate", f"-F exit=-EACCES {USER}"),
    ("access", "creat,open,openat,truncate,ftruncate", f"-F exit=-EPERM {USER}"),
    ("delete", "unlink,unlinkat,rename,renameat,rmdir", USER),
    ("user_emulation", "execve", "-C euid!=uid -F auid!=unset"),
)
# A watched path's parent directory must exist (auditctl refuses the rule otherwise, and stops
# loading the rest): every path above is under /etc, /var/lib or /var/log.
# Every name above exists in both the 64-bit and the 32-bit syscall tables; stime only in the
# 32-bit one.
B32_ONLY = (("time-change", "stime", ""),)
PATH = re.compile(r"/[A-Za-z0-9._/-]{1,200}")


def safe_path(path: object) -> bool:
    """An absolute path that can go into a rule line as it is (no spaces, quotes, '..')."""
    return isinstance(path, str) and bool(PATH.fullmatch(path)) and "/../" not in f"{path}/"


def path_list(
    name: str, paths: object, example: str, *, required: bool = True, whole_disk: bool = True
) -> list[str]:
    """An inventory list of absolute paths that become rule or unit lines: each strictly
    checked (`safe_path`), "/" refused where a whole-disk value makes no sense."""
    if not isinstance(paths, Sequence) or isinstance(paths, str) or (required and not paths):
        kind = "a non-empty list" if required else "a list"
        raise EndpointConfigError(f"{name}: write {kind} of absolute paths, e.g. {example}")
    for path in paths:
        if not safe_path(path) or (not whole_disk and path == "/"):
            below = "" if whole_disk else " below /"
            hint = "" if whole_disk else "; scan directories, not the whole disk"
            raise EndpointConfigError(
                f"{name}: {path!r} is not an absolute path of letters, digits and . _ - /"
                f"{below} (no spaces, no '..'{hint})"
            )
    return sorted(set(paths))


def watched_paths(variables: Mapping[str, Any]) -> list[str]:
    extra = variables.get("endpoint_audit_watch_extra") or []
    return path_list("endpoint_audit_watch_extra", extra, "[/srv/app/config]", required=False)


def privileged_programs(found: Sequence[str]) -> list[str]:
    """The setuid/setgid programs the host reported (`find -perm /6000`), checked."""
    programs = set(EXECUTED["privileged"])
    for path in found:
        if not safe_path(path):
            raise EndpointConfigError(f"the host reported a strange setuid path {path!r}")
        programs.add(path)
    return sorted(programs)


def rules_file(variables: Mapping[str, Any], setuid: Sequence[str] = ()) -> str:
    """The content of /etc/audit/rules.d/50-kastro.rules (loaded by augenrules)."""
    immutable = variables.get("endpoint_audit_immutable", False)
    if not isinstance(immutable, bool):
        raise EndpointConfigError("endpoint_audit_immutable: write true or false")
    lines = [
        "# Kastro endpoint: audit rules (generated; kastro.endpoint.audit).",
        "# ausearch -k KEY finds the records; docs in roles/endpoint/README.md.",
        "-D",
        "-b 8192",
        "-f 1",
        "--backlog_wait_time 60000",
    ]
    for key, paths in WATCHES.items():
        lines += [f"-w {path} -p wa -k {key}" for path in paths]
    lines += [f"-w {path} -p wa -k kastro" for path in watched_paths(variables)]
    # The /sbin names too (merged /usr: the same files; the scanners look for these lines).
    lines += [f"-w /sbin/{tool} -p x -k modules" for tool in ("insmod", "rmmod", "modprobe")]
    executed = {**EXECUTED, "privileged": tuple(privileged_programs(setuid))}
    for key, programs in executed.items():
        who = "-F auid!=unset" if key == "network_tools" else USER
        lines += [f"-a always,exit -F path={p} -F perm=x {who} -k {key}" for p in programs]
    for arch in ("b64", "b32"):
        for key, calls, condition in SYSCALLS + (B32_ONLY if arch == "b32" else ()):
            rule = f"-a always,exit -F arch={arch} -S {calls}"
            lines.append(f"{rule} {condition} -k {key}".replace("  ", " "))
    # Auditing on (1) or on and locked until the next boot (2); augenrules keeps the last -e.
    lines.append("-e 2" if immutable else "-e 1")
    return "\n".join(lines) + "\n"


def audit_rules(variables: Mapping[str, Any], setuid: Sequence[str]) -> str:
    """Ansible filter: the rules file for this host and the setuid programs it has."""
    return rules_file(variables, setuid)
