"""The endpoint role's kernel settings for one host, compiled on the controller.

Three profiles follow from the planned role: a **gateway** forwards packets (IPv4 and IPv6)
and keeps the modules the links, telework and VLANs need; a **server** and a **sensor** get the
strictest settings (no forwarding, no redirects, no source routes). Every profile: the ANSSI
BP-028 / CIS kernel settings that do not break what Kastro runs, and a blacklist of modules
for rare filesystems, USB storage and protocols nobody in a town hall uses.

`endpoint_sysctl_extra` (a mapping) adds or overrides settings and `endpoint_modules_allowed`
(a list) takes modules off the blacklist, per host or group; both are checked strictly here,
so nothing unchecked reaches a file the kernel reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PROFILES = ("gateway", "server", "sensor")

# ANSSI-BP-028 (R7-R12 kernel, R13-R14 network) and CIS Debian 12 (3.x), minus what would
# break a Kastro host: unprivileged user namespaces stay for podman on the controller only
# (not set here), ptrace_scope 1 keeps a root debugger possible.
COMMON_SYSCTL: dict[str, str] = {
    "dev.tty.ldisc_autoload": "0",
    "fs.protected_fifos": "2",
    "fs.protected_hardlinks": "1",
    "fs.protected_regular": "2",
    "fs.protected_symlinks": "1",
    "fs.suid_dumpable": "0",
    "kernel.dmesg_restrict": "1",
    "kernel.kexec_load_disabled": "1",
    "kernel.kptr_restrict": "2",
    "kernel.panic_on_oops": "1",
    "kernel.perf_cpu_time_max_percent": "1",
    "kernel.perf_event_max_sample_rate": "1",
    "kernel.perf_event_paranoid": "3",  # Debian's own, stricter than ANSSI's 2 (waived)
    "kernel.pid_max": "65536",
    "kernel.randomize_va_space": "2",
    "kernel.sysrq": "0",
    "kernel.unprivileged_bpf_disabled": "1",
    "kernel.yama.ptrace_scope": "1",
    "net.core.bpf_jit_harden": "2",
    "net.ipv4.conf.all.accept_local": "0",
    "net.ipv4.conf.all.arp_filter": "0",
    "net.ipv4.conf.all.arp_ignore": "2",
    "net.ipv4.conf.all.drop_gratuitous_arp": "1",
    "net.ipv4.conf.all.route_localnet": "0",
    "net.ipv4.conf.all.shared_media": "0",
    "net.ipv4.conf.default.shared_media": "0",
    "net.ipv4.ip_local_port_range": "32768 65535",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.secure_redirects": "0",
    "net.ipv4.conf.default.secure_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv4.conf.default.accept_source_route": "0",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.conf.default.log_martians": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv4.icmp_ignore_bogus_error_responses": "1",
    "net.ipv4.tcp_rfc1337": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
    "net.ipv6.conf.all.accept_source_route": "0",
    "net.ipv6.conf.default.accept_source_route": "0",
    # Addresses come from the plan, never from router advertisements (ANSSI R13).
    "net.ipv6.conf.all.accept_ra_defrtr": "0",
    "net.ipv6.conf.default.accept_ra_defrtr": "0",
    "net.ipv6.conf.all.accept_ra_pinfo": "0",
    "net.ipv6.conf.default.accept_ra_pinfo": "0",
    "net.ipv6.conf.all.accept_ra_rtr_pref": "0",
    "net.ipv6.conf.default.accept_ra_rtr_pref": "0",
    "net.ipv6.conf.all.autoconf": "0",
    "net.ipv6.conf.default.autoconf": "0",
    "net.ipv6.conf.all.max_addresses": "1",
    "net.ipv6.conf.default.max_addresses": "1",
    "net.ipv6.conf.all.router_solicitations": "0",
    "net.ipv6.conf.default.router_solicitations": "0",
    "vm.mmap_min_addr": "65536",
}
PROFILE_SYSCTL: dict[str, dict[str, str]] = {
    # A gateway routes: forwarding on. Reverse-path filtering loose (2): in a ring of links a
    # flow's two directions can take different paths; the firewall's anti-spoofing checks
    # each zone's sources exactly. Router advertisements are not taken from anyone.
    "gateway": {
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
        "net.ipv4.conf.all.rp_filter": "2",
        "net.ipv4.conf.default.rp_filter": "2",
        "net.ipv6.conf.all.accept_ra": "0",
        "net.ipv6.conf.default.accept_ra": "0",
    },
    "server": {
        "net.ipv4.ip_forward": "0",
        "net.ipv6.conf.all.forwarding": "0",
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.conf.default.rp_filter": "1",
    },
}
PROFILE_SYSCTL["sensor"] = dict(PROFILE_SYSCTL["server"])

# Rare filesystems, USB storage, FireWire/Thunderbolt DMA, and network protocols with a long
# record of kernel bugs that no municipal network uses (ANSSI R10-R11 spirit, CIS 1.1.1, 3.2).
BLACKLIST = (
    "af_802154", "appletalk", "atm", "ax25", "bluetooth", "btusb", "can", "cramfs", "dccp",
    "decnet", "econet", "firewire-core", "firewire-ohci", "floppy", "freevxfs", "hfs",
    "hfsplus", "ipx", "jffs2", "n_hdlc", "netrom", "p8022", "p8023", "psnap", "rds", "rose",
    "sctp", "squashfs", "thunderbolt", "tipc", "udf", "usb-storage", "uas", "vivid", "x25",
)  # fmt: skip
# What a profile's own features load: never blacklisted, whatever the inventory says.
NEEDED = {
    "gateway": ("wireguard", "8021q", "tun", "ip6_tunnel", "nf_tables"),
    "server": ("nf_tables",),
    "sensor": ("nf_tables", "af_packet"),
}

SYSCTL_KEY = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_-]+){1,6}")
SYSCTL_VALUE = re.compile(r"-?[0-9]{1,10}(?: -?[0-9]{1,10}){0,3}")
MODULE = re.compile(r"[a-z0-9_-]{1,40}")


class EndpointConfigError(ValueError):
    """An endpoint setting the role cannot use; the message names the variable and the fix."""


def profile_of(variables: Mapping[str, Any], host: str) -> str:
    planned = ((variables.get("kastro_plan") or {}).get("hosts") or {}).get(host) or {}
    role = str(planned.get("role") or "")
    if role not in PROFILES:
        raise EndpointConfigError(
            f"{host} has no planned role among {', '.join(PROFILES)}: run 'kastro apply' "
            "(the endpoint role hardens the hosts of the plan only)"
        )
    return role


def sysctl_settings(variables: Mapping[str, Any], host: str) -> dict[str, str]:
    profile = profile_of(variables, host)
    extra = variables.get("endpoint_sysctl_extra") or {}
    if not isinstance(extra, Mapping):
        raise EndpointConfigError("endpoint_sysctl_extra: write a mapping of key: value")
    settings = {**COMMON_SYSCTL, **PROFILE_SYSCTL[profile]}
    for key, value in extra.items():
        text = str(value).strip()
        if not SYSCTL_KEY.fullmatch(str(key)):
            raise EndpointConfigError(
                f"endpoint_sysctl_extra: {key!r} is not a sysctl name "
                "(e.g. net.ipv4.tcp_syncookies)"
            )
        if not SYSCTL_VALUE.fullmatch(text):
            raise EndpointConfigError(
                f"endpoint_sysctl_extra.{key}: {value!r} is not a number (or up to 4 numbers)"
            )
        settings[str(key)] = text
    return dict(sorted(settings.items(), key=_applied_order))


# Writing these resets the interfaces' other settings (redirects, source routes, router
# advertisements) to the host's or the router's defaults (the kernel's ip-sysctl.rst), so a
# host that changes profile (gateway to server) must get them before the rest: otherwise
# `sysctl --load` undoes its own earlier lines and only the next run repairs them (measured
# in tests/vm).
APPLIED_FIRST = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def _applied_order(item: tuple[str, str]) -> tuple[int, str]:
    key = item[0]
    return (APPLIED_FIRST.index(key), key) if key in APPLIED_FIRST else (len(APPLIED_FIRST), key)


def blocked_modules(variables: Mapping[str, Any], host: str) -> list[str]:
    profile = profile_of(variables, host)
    allowed = variables.get("endpoint_modules_allowed") or []
    if not isinstance(allowed, list) or not all(
        isinstance(m, str) and MODULE.fullmatch(m) for m in allowed
    ):
        raise EndpointConfigError(
            "endpoint_modules_allowed: write a list of module names (letters, digits, '-', '_')"
        )
    keep = {_canonical(m) for m in (*allowed, *NEEDED[profile])}
    return [m for m in BLACKLIST if _canonical(m) not in keep]


def _canonical(module: str) -> str:
    return module.replace("-", "_")  # the kernel treats usb-storage and usb_storage alike


def sysctl_file(settings: Mapping[str, str]) -> str:
    lines = ["# Kastro endpoint: kernel settings (generated; kastro.endpoint.profile)"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def modprobe_file(modules: list[str]) -> str:
    """`install M /bin/false` refuses an explicit modprobe too; `blacklist M` stops aliases."""
    lines = ["# Kastro endpoint: modules no municipal host needs (generated; kastro.endpoint)"]
    for module in modules:
        lines += [f"blacklist {module}", f"install {module} /bin/false"]
    return "\n".join(lines) + "\n"


def sysctl_drift(settings: Mapping[str, str], running: list[str]) -> list[str]:
    """The keys whose running value (`sysctl -n`, one line each, in order) is not the wanted
    one; whitespace compared loosely (ip_local_port_range prints a tab)."""
    return [
        key
        for (key, wanted), now in zip(settings.items(), running, strict=True)
        if wanted.split() != now.split()
    ]


def kernel_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The kernel part of what the endpoint role writes on `host`."""
    settings = sysctl_settings(variables, host)
    modules = blocked_modules(variables, host)
    return {
        "profile": profile_of(variables, host),
        "sysctl": settings,
        "sysctl_file": sysctl_file(settings),
        "blocked_modules": modules,
        "modprobe_file": modprobe_file(modules),
    }
