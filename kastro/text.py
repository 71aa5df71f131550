"""Plain-text output the commands share: tables for `kastro show matrix` and `kastro lab`."""

from __future__ import annotations


def format_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no hosts)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(row.get(c, "")) for row in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(row.get(c, "").ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)
