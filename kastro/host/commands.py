"""The one layer through which host programs run commands: an argument list (never a shell),
output captured as text, and a failure that says which command failed and what it printed."""

from __future__ import annotations

import subprocess


class CommandError(RuntimeError):
    """A command exited non-zero."""


def run(
    *argv: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # A missing program raises OSError (FileNotFoundError), as subprocess does.
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc
