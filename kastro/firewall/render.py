"""The compiled ruleset (kastro.firewall.ruleset) as nftables text: `table inet kastro`.

Text is built in Python for both of Kastro's tables (this one and the links' QoS table), so
there is one way to write nft and it is unit-tested; the role writes the result and checks it
with `nft -c` before anything is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HOOKS = (
    ("prerouting", "type filter hook prerouting priority raw; policy accept;",
     "# A packet from a zone must carry that zone's addresses."),
    ("input", "type filter hook input priority filter; policy drop;", ""),
    ("forward", "type filter hook forward priority filter; policy drop;", ""),
)  # fmt: skip


def _lines(indent: str, items: Iterable[str]) -> list[str]:
    return [f"{indent}{item}" for item in items]


def _header(ruleset: Mapping[str, Any], managed: str) -> list[str]:
    return [
        "#!/usr/sbin/nft -f",
        f"# {managed}",
        f"# Kastro firewall for {ruleset['host']} ({ruleset['kind']}), compiled from",
        "# kastro_policy. Only this table is replaced; other tables (Docker, fail2ban, ...) stay.",
        *_lines("#   ", ruleset["summary"]),
        "",
        '# Replace the table in one transaction ("table" first, so "delete" never fails).',
        "table inet kastro",
        "delete table inet kastro",
        "",
    ]


def _sets(ruleset: Mapping[str, Any]) -> list[str]:
    out = []
    for name, spec in ruleset["sets"].items():
        out += [f"    set {name} {{", f"        type {spec['type']}", "        flags interval"]
        if spec["elements"]:
            out.append(f"        elements = {{ {', '.join(spec['elements'])} }}")
        out.append("    }")
    for name, kind in sorted((ruleset.get("meters") or {}).items()):
        out += [
            "    # New connections per source to a published service (filled by the kernel).",
            f"    set {name} {{",
            f"        type {kind}",
            "        size 65535",
            "        flags dynamic, timeout",
            "        timeout 1m",
            "    }",
        ]
    return [
        *out,
        "",
        "    # Filled by the SOC (kastro-firewall block ADDRESS --timeout 1h);"
        " kept across reloads.",
        "    set blocklist_v4 {",
        "        type ipv4_addr",
        "        flags interval, timeout",
        "    }",
        "    set blocklist_v6 {",
        "        type ipv6_addr",
        "        flags interval, timeout",
        "    }",
        "    # Filled by the SOC (kastro-firewall isolate ADDRESS): talks to the allowlist only.",
        "    set isolated_v4 {",
        "        type ipv4_addr",
        "        flags interval, timeout",
        "    }",
        "    set isolated_v6 {",
        "        type ipv6_addr",
        "        flags interval, timeout",
        "    }",
        "    # SSH brute force (filled by the kernel): each source's rate of new connections,",
        "    # and the sources over it, dropped until the timeout.",
        *(
            line
            for family in ("v4", "v6")
            for line in (
                f"    set ssh_meter_{family} {{",
                f"        type {'ipv4_addr' if family == 'v4' else 'ipv6_addr'}",
                "        size 65535",
                "        flags dynamic, timeout",
                "        timeout 1m",
                "    }",
                f"    set ssh_guarded_{family} {{",
                f"        type {'ipv4_addr' if family == 'v4' else 'ipv6_addr'}",
                "        size 65535",
                "        flags dynamic, timeout",
                f"        timeout {ruleset.get('ssh_guard_block', '1h')}",
                "    }",
            )
        ),
        "",
    ]


def _counters(ruleset: Mapping[str, Any]) -> list[str]:
    out = []
    for name, comment in sorted(ruleset["counters"].items()):
        text = str(comment).replace('"', "'")
        out += [f"    counter {name} {{", f'        comment "{text}"', "    }"]
    return [*out, ""]


def _chains(ruleset: Mapping[str, Any]) -> list[str]:
    out = []
    for chain in ruleset["chains"]:
        out += [f"    # {chain['comment']}", f"    chain {chain['name']} {{"]
        out += _lines("        ", chain["rules"])
        out += ["    }", ""]
    for name, hook, comment in HOOKS:
        if comment:
            out.append(f"    {comment}")
        out += [f"    chain {name} {{", f"        {hook}", *_lines("        ", ruleset[name])]
        out += ["    }", ""]
    out += [
        "    chain output {",
        "        type filter hook output priority filter; policy accept;",
        *_lines("        ", ruleset.get("output") or []),
        "    }",
    ]
    if ruleset.get("mark_prerouting"):
        out += [
            "",
            "    # Two or more uplinks: each connection keeps the uplink it came in by or left",
            "    # through (kastro-uplinks routes the marks; see docs/inventory.md).",
            "    chain prerouting_mark {",
            "        type filter hook prerouting priority mangle; policy accept;",
            *_lines("        ", ruleset["mark_prerouting"]),
            "    }",
            "",
            "    chain postrouting_mark {",
            "        type filter hook postrouting priority mangle; policy accept;",
            *_lines("        ", ruleset.get("mark_postrouting") or []),
            "    }",
        ]
    if ruleset.get("dnat"):
        out += [
            "",
            "    # Published services (kastro_published): public address and port -> host.",
            "    chain prerouting_nat {",
            "        type nat hook prerouting priority dstnat; policy accept;",
            *_lines("        ", ruleset["dnat"]),
            "    }",
        ]
    if ruleset["postrouting"]:
        out += [
            "",
            "    chain postrouting {",
            "        type nat hook postrouting priority srcnat; policy accept;",
            *_lines("        ", ruleset["postrouting"]),
            "    }",
        ]
    return out


def render(ruleset: Mapping[str, Any], managed: str) -> str:
    """The whole file; `managed` is the header line saying who manages it."""
    lines = [
        *_header(ruleset, managed),
        "table inet kastro {",
        *_sets(ruleset),
        *_counters(ruleset),
        *_chains(ruleset),
        "}",
    ]
    return "\n".join(lines) + "\n"
