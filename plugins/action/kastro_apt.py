"""kastro_apt: ansible.builtin.apt, asked only when a named package is not installed yet.

The roles install their packages with ``state: present``. On a routine run every package is
already there, yet ansible.builtin.apt still opens the whole apt cache (python-apt) to find
that out: about 0.3 s per host and role, the largest fixed cost of a run with nothing to do
(#14). This action asks dpkg first, in one ``dpkg-query`` for all the names, and hands the
task to ansible.builtin.apt unchanged (same arguments, same result, same check mode) only when
one of them is missing or only half installed. Any other state (absent, latest, a .deb) goes
straight to ansible.builtin.apt.

    - name: Install nftables
      kastro_apt:
        name: [nftables, python3-prometheus-client]
        state: present
        update_cache: true
        cache_valid_time: 3600
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

# dpkg's abbreviated status of a package whose files are all in place: wanted "install",
# status "installed", no error flag.
INSTALLED = "ii "
DPKG_FORMAT = "--showformat=${db:Status-Abbrev}\\t${Package}\\n"
# Package names as Debian allows them (policy 5.6.1); anything else is left to apt's own checks.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")


def wanted(args: dict[str, Any]) -> list[str] | None:
    """The packages this task only needs present, or None when it asks for anything else."""
    if args.get("state", "present") != "present" or args.get("deb"):
        return None
    names = args.get("name", args.get("pkg", args.get("package")))
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    if not isinstance(names, list) or not names:
        return None
    if not all(isinstance(name, str) and name and set(name) <= NAME_CHARS for name in names):
        return None  # versions (pkg=1.2), wildcards, architectures: apt decides
    return names


def installed(dpkg_output: str) -> set[str]:
    """The packages dpkg-query reports as fully installed ("<status>\\t<name>" per line)."""
    found = set()
    for line in dpkg_output.splitlines():
        status, _, name = line.partition("\t")
        if status == INSTALLED and name:
            found.add(name)
    return found


class ActionModule(ActionBase):
    """One dpkg-query; ansible.builtin.apt only when something is missing."""

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        names = wanted(args)
        if names is not None:
            probe = self._execute_module(
                module_name="ansible.legacy.command",
                module_args={"argv": ["dpkg-query", "--show", DPKG_FORMAT, *names]},
                task_vars=task_vars,
            )
            if set(names) <= installed(probe.get("stdout", "")):
                result.update(changed=False, msg=f"installed already: {', '.join(names)}")
                return result
        apt = self._execute_module("ansible.builtin.apt", module_args=args, task_vars=task_vars)
        result.update(apt)
        return result
