"""``python3 -m monitors``: the monitor alone, for sensors that do not carry the rest of Kastro.

Needs only the standard library, PyYAML, prometheus-client and numpy (Debian: python3-yaml,
python3-prometheus-client, python3-numpy); the Ansible role ``monitor`` installs it this way.
"""

from __future__ import annotations

import argparse
import sys

from monitors.run import MonitorUsageError, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m monitors", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MonitorUsageError as exc:
        parser.error(str(exc))
    return 2


if __name__ == "__main__":
    sys.exit(main())
