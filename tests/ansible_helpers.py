"""One task of Kastro's own plugins, run by the real ansible-playbook against this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK_EXE = Path(sys.executable).with_name("ansible-playbook")


def run_task(tmp_path: Path, task: str, extra_vars: dict[str, Any], *flags: str) -> dict:
    """The result on localhost of one task (YAML text under `tasks:`), with Kastro's modules
    and actions and these extra variables."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n" + task
    )
    extra = tmp_path / "args.json"
    extra.write_text(json.dumps(extra_vars))
    env = {
        **os.environ,
        "ANSIBLE_LIBRARY": str(ROOT / "plugins" / "modules"),
        "ANSIBLE_ACTION_PLUGINS": str(ROOT / "plugins" / "action"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    proc = subprocess.run(
        [str(PLAYBOOK_EXE), "-i", "localhost,", str(playbook), "-e", f"@{extra}", *flags],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
