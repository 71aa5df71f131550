"""The `kastro` command: one entry point for admins, the SOC and CI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kastro import __version__
from kastro.lab.hosts import LabError


class UsageError(Exception):
    """Bad command-line input; the message names the argument and the fix."""


Handler = Callable[[argparse.Namespace], int]


def _cmd_lab_image(args: argparse.Namespace) -> int:
    from kastro.lab.image import ImageBuildError, build_image

    try:
        tag = build_image(force=args.force)
    except ImageBuildError as exc:
        print(f"kastro lab image: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


def _cmd_lab_up(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    overlay = hosts.up(Path(args.inventory), args.lab)
    print(
        hosts.format_table(
            [
                {"host": h.name, "container": h.container, "state": h.state}
                for h in hosts.list_hosts(args.lab)
            ]
        )
    )
    print(f"connection overlay: {overlay}")
    return 0


def _cmd_lab_down(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    removed = hosts.down(args.lab)
    print(f"removed {len(removed)} lab host(s)" + (f": {', '.join(removed)}" if removed else ""))
    return 0


def _cmd_lab_status(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    print(
        hosts.format_table(
            [
                {"host": h.name, "container": h.container, "state": h.state}
                for h in hosts.list_hosts(args.lab)
            ]
        )
    )
    return 0


def _cmd_lab_report(args: argparse.Namespace) -> int:
    from kastro.lab import hosts

    print(hosts.format_table(hosts.host_report(args.lab)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kastro",
        description="Security and network automation for municipalities.",
    )
    parser.add_argument("--version", action="version", version=f"kastro {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    lab = commands.add_parser("lab", help="local lab of real Debian 12 test hosts")
    lab_commands = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lab_commands.required = True
    image = lab_commands.add_parser(
        "image",
        help="build the Debian 12 systemd base image (reused while its recipe is unchanged)",
    )
    image.add_argument(
        "--force", action="store_true", help="rebuild even if the recipe is unchanged"
    )
    image.set_defaults(handler=_cmd_lab_image)

    lab_up = lab_commands.add_parser("up", help="start one test host per inventory host")
    lab_up.add_argument(
        "inventory", nargs="?", default="inventory/example", help="inventory directory"
    )
    lab_down = lab_commands.add_parser("down", help="remove every host this lab created")
    lab_status = lab_commands.add_parser("status", help="list the lab's hosts")
    lab_report = lab_commands.add_parser(
        "report", help="show what the playbooks deployed on each host"
    )
    for sub, handler in (
        (lab_up, _cmd_lab_up),
        (lab_down, _cmd_lab_down),
        (lab_status, _cmd_lab_status),
        (lab_report, _cmd_lab_report),
    ):
        sub.add_argument("--lab", default="kastro", help="lab name (label and container prefix)")
        sub.set_defaults(handler=handler)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        parser.error(str(exc))
    except LabError as exc:
        print(f"kastro {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
