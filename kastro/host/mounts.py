"""kastro-mounts: the options nodev, nosuid and noexec on the file systems a host was
installed with (ANSSI-BP-028 R28, CIS 1.1), in /etc/fstab and live.

Only options are added: the device, type, other options and every other line of fstab stay
as the installer wrote them (a separate /var is UUID=... on a real host: it is never
rewritten). A mount point the host does not have is left alone: a role cannot repartition a
running host. /dev/shm, which systemd mounts without an fstab line, gets one (systemd's
remount-fs applies it at boot). The new fstab is checked by `findmnt --verify` before it
replaces the old one; each live mount that lacks an option is remounted with it.

    kastro-mounts --want '{"/tmp": ["nodev", "nosuid", "noexec"], ...}' [--check]

prints JSON: {"changed": bool, "fstab": [...], "remounted": [...], "absent": [...]}.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OPTIONS = ("nodev", "nosuid", "noexec")
# What each option turns off, written explicitly in fstab by some installers.
OPPOSITE = {"nodev": "dev", "nosuid": "suid", "noexec": "exec"}
MOUNT_POINT = re.compile(r"/[a-z0-9_./-]{1,63}")
# Mount points that have no fstab line on a Debian install but an fstab line may set.
ADDED_LINES = {"/dev/shm": "tmpfs"}  # noqa: S108 (a mount point, not a file)


class MountsError(ValueError):
    """The wanted options are not what this program accepts."""


def checked_want(raw: object) -> dict[str, tuple[str, ...]]:
    """The wanted options, each mount point and option checked (they reach mount's argv)."""
    if not isinstance(raw, dict):
        raise MountsError("--want: a JSON object of mount point to list of options")
    want = {}
    for point, options in raw.items():
        if not (isinstance(point, str) and MOUNT_POINT.fullmatch(point)) or ".." in point:
            raise MountsError(f"--want: {point!r} is not an absolute mount point other than /")
        if not isinstance(options, list) or not set(options) <= set(OPTIONS):
            raise MountsError(f"--want: {point}: options are a list of {', '.join(OPTIONS)}")
        want[point.rstrip("/")] = tuple(o for o in OPTIONS if o in options)
    return want


def _unescape(word: str) -> str:
    """fstab and mountinfo write a space in a path as \\040 (and tab, newline, backslash)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), word)


def live_options(mountinfo: str) -> dict[str, set[str]]:
    """Mount point -> its per-mount options, from /proc/self/mountinfo (the last mount of a
    point is the one in effect)."""
    found: dict[str, set[str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) >= 6:
            found[_unescape(fields[4])] = set(fields[5].split(","))
    return found


def _merged(options: str, wanted: Sequence[str]) -> str:
    current = [o for o in options.split(",") if o and o not in {OPPOSITE[w] for w in wanted}]
    return ",".join(current + [w for w in wanted if w not in current])


@dataclass
class Plan:
    fstab: str
    in_fstab: list[str] = field(default_factory=list)  # lines changed or added
    remount: dict[str, tuple[str, ...]] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # neither mounted nor in fstab
    unlisted: list[str] = field(default_factory=list)  # mounted by a unit, not by fstab


def plan(fstab: str, mountinfo: str, want: Mapping[str, Sequence[str]]) -> Plan:
    """The new fstab and the remounts that bring `want` about."""
    live = live_options(mountinfo)
    lines = fstab.splitlines(keepends=True)
    changed, listed = _add_options(lines, want)
    for point, kind in ADDED_LINES.items():
        if point in want and point not in listed and point in live and want[point]:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            fields = (kind, point, kind, ",".join(["defaults", *want[point]]), "0", "0")
            lines.append("\t".join(fields) + "\n")
            listed.add(point)
            changed.append(point)
    result = Plan(fstab="".join(lines), in_fstab=changed)
    for point, options in want.items():
        if point not in live:
            if point not in listed:
                result.absent.append(point)
        elif point not in listed:
            result.unlisted.append(point)
        elif missing := tuple(o for o in options if o not in live[point]):
            result.remount[point] = missing
    return result


def _add_options(lines: list[str], want: Mapping[str, Sequence[str]]) -> tuple[list[str], set[str]]:
    """The wanted options added to `lines` in place; returns the points changed and listed."""
    changed: list[str] = []
    listed: set[str] = set()
    for number, line in enumerate(lines):
        text = line.strip()
        # Fields and the spaces between them, so the admin's alignment stays.
        parts = re.split(r"(\s+)", text)
        words = parts[::2]
        if text.startswith("#") or len(words) < 4:
            continue
        point = _unescape(words[1]).rstrip("/") or "/"
        if point not in want:
            continue
        listed.add(point)
        merged = _merged(words[3], want[point])
        if merged != words[3]:
            parts[6] = merged
            indent = line[: len(line) - len(line.lstrip())]
            lines[number] = indent + "".join(parts) + ("\n" if line.endswith("\n") else "")
            changed.append(point)
    return changed, listed


def write_fstab(path: Path, text: str) -> None:
    """Checked by findmnt, then put in place atomically with the old file's mode."""
    from kastro.host.commands import run

    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".fstab.kastro-", delete=False, encoding="utf-8"
    ) as file:
        file.write(text)
    staged = Path(file.name)
    try:
        staged.chmod(mode)
        run("findmnt", "--verify", "--tab-file", str(staged))
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from kastro.host.commands import CommandError, run

    parser = argparse.ArgumentParser(prog="kastro-mounts", description=__doc__.split("\n")[0])
    parser.add_argument("--want", required=True, help="JSON: mount point -> list of options")
    parser.add_argument("--check", action="store_true", help="say what would change only")
    parser.add_argument("--fstab", type=Path, default=Path("/etc/fstab"))
    parser.add_argument("--mountinfo", type=Path, default=Path("/proc/self/mountinfo"))
    args = parser.parse_args(argv)
    try:
        want = checked_want(json.loads(args.want))
    except (json.JSONDecodeError, MountsError) as error:
        parser.error(str(error))
    fstab = args.fstab.read_text(encoding="utf-8") if args.fstab.exists() else ""
    todo = plan(fstab, args.mountinfo.read_text(encoding="utf-8"), want)
    report = {
        "changed": bool(todo.in_fstab or todo.remount),
        "fstab": todo.in_fstab,
        "remounted": sorted(todo.remount),
        "absent": sorted(todo.absent),
        "unlisted": sorted(todo.unlisted),
    }
    if not args.check:
        try:
            if todo.in_fstab:
                write_fstab(args.fstab, todo.fstab)
            for point, missing in sorted(todo.remount.items()):
                run("mount", "-o", ",".join(["remount", *missing]), "--", point)
        except (CommandError, OSError) as error:
            print(json.dumps({**report, "error": str(error)}, ensure_ascii=False))
            return 1
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
