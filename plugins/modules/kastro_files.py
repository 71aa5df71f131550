#!/usr/bin/python3
"""Ansible module kastro_files: a role's files, directories and links in one step on the host.

Each Ansible ``template``/``copy``/``file`` task runs one or two modules on the host, and a
module run costs about a third of a second of CPU here (benchmarks/module_cost.py). A role
renders its files on the controller (``lookup('template', ...)``) and hands them all to this
module, which checks every entry before it changes anything, then writes only what differs
(atomically, after the optional validate command) and reports which paths changed.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kastro_files
short_description: Files, directories and symlinks of a Kastro role in one step
description:
  - Everything is checked first (owners, groups, modes, link targets); if any entry is wrong
    nothing is changed.
  - A file is written only when its content, mode or owner differ. Every new file is staged
    beside its destination and checked by its validate command; only when all pass are they
    put in place, so one bad file leaves all of them as they were.
options:
  files:
    description: The entries, applied in order (directories, then files, then links).
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Absolute path.
        type: path
        required: true
      state:
        description: What dest is.
        type: str
        choices: [file, directory, link]
        default: file
      content:
        description: The file's text (state file).
        type: str
      src:
        description: The link's target (state link); it must exist.
        type: path
      owner:
        description: User name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
      mode:
        description: Octal mode as a string such as "0644" (file, directory).
        type: str
      validate:
        description: Command run on the staged file before it is installed; %s is its path.
        type: str
  manifest:
    description:
      - JSON file where the SHA-256 of every file's content is recorded (kastro-aide reads it
        to tell Kastro's own changes from foreign ones). Empty to record nothing.
    type: str
    default: /var/lib/kastro/managed-files.json
  record:
    description:
      - Files another task installed whole (a binary archive copied from the controller);
        their SHA-256 is recorded in the manifest as they are now. Nothing about them changes.
    type: list
    elements: path
    default: []
author: Kastro
"""

RETURN = r"""
changed_files:
  description: The dest of every entry that was (or in check mode would be) changed.
  type: list
  elements: str
  returned: always
"""

import grp
import os
import pwd
import re
import shlex
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

MANIFEST = "/var/lib/kastro/managed-files.json"
_MODE = re.compile(r"^0?[0-7]{3,4}$")
_KINDS = {"file": stat.S_ISREG, "directory": stat.S_ISDIR, "link": stat.S_ISLNK}
_ENTRY_SPEC = {
    "dest": {"type": "path", "required": True},
    "state": {"type": "str", "choices": list(_KINDS), "default": "file"},
    "content": {"type": "str"},
    "src": {"type": "path"},
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
    "mode": {"type": "str"},
    "validate": {"type": "str"},
}


class EntryError(ValueError):
    """An entry that cannot be applied; the message names the path and the fix."""


def _ids(entry: dict[str, Any]) -> tuple[int, int]:
    try:
        return pwd.getpwnam(entry["owner"]).pw_uid, grp.getgrnam(entry["group"]).gr_gid
    except KeyError as err:
        owner, group = entry["owner"], entry["group"]
        raise EntryError(
            f"{entry['dest']}: owner {owner!r} or group {group!r} does not exist"
        ) from err


def _current(dest: str) -> os.stat_result | None:
    try:
        return Path(dest).lstat()
    except FileNotFoundError:
        return None


def _kind_allowed(entry: dict[str, Any]) -> os.stat_result | None:
    """What is at dest now (lstat), refusing a kind the entry may not replace."""
    st = _current(entry["dest"])
    if st is None:
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if entry["state"] == "directory" and not is_dir:
        raise EntryError(f"{entry['dest']}: is not a directory; move it away by hand")
    if entry["state"] != "directory" and is_dir:
        raise EntryError(f"{entry['dest']}: a directory is where the {entry['state']} belongs")
    return st


def check_entry(entry: dict[str, Any], planned: dict[str, str]) -> dict[str, Any]:
    """The entry with uid, gid and mode resolved, or EntryError. Changes nothing.

    planned: dest -> state of the entries before this one (they will exist).
    """
    dest, state = entry["dest"], entry["state"]
    if not Path(dest).is_absolute():
        raise EntryError(f"{dest}: dest must be an absolute path")
    checked = dict(entry)
    checked["uid"], checked["gid"] = _ids(entry)
    checked["current"] = _kind_allowed(entry)
    if state == "link":
        src = entry.get("src")
        if not src or not (Path(src).exists() or str(Path(src)) in planned):
            raise EntryError(f"{dest}: the link target {entry.get('src')!r} does not exist here")
        return checked
    if entry.get("mode") is None or not _MODE.match(entry["mode"]):
        raise EntryError(
            f"{dest}: mode must be an octal string like '0644', not {entry.get('mode')!r}"
        )
    checked["mode_bits"] = int(entry["mode"], 8)
    if state == "file" and entry.get("content") is None:
        raise EntryError(f"{dest}: a file needs content")
    parent = str(Path(dest).parent)
    if not Path(parent).is_dir() and planned.get(parent) != "directory":
        raise EntryError(f"{dest}: the directory {parent} does not exist; create it first")
    return checked


def check_all(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    planned: dict[str, str] = {}
    checked = []
    for entry in entries:
        checked.append(check_entry(entry, planned))
        planned[str(Path(entry["dest"]))] = entry["state"]
    return checked


def _attributes_differ(st: os.stat_result, entry: dict[str, Any]) -> bool:
    wanted = (entry["uid"], entry["gid"], entry["mode_bits"])
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != wanted


def _read(dest: str) -> str | None:
    try:
        return Path(dest).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def needs_change(entry: dict[str, Any]) -> bool:
    st = entry["current"]
    if st is None or not _KINDS[entry["state"]](st.st_mode):
        return True
    if entry["state"] == "link":
        return bool(str(Path(entry["dest"]).readlink()) != entry["src"])
    if _attributes_differ(st, entry):
        return True
    return bool(entry["state"] == "file" and _read(entry["dest"]) != entry["content"])


def stage_file(module: AnsibleModule, entry: dict[str, Any]) -> Path:
    """Write the new content beside dest, owned and moded, and validate it; returns its path.
    Whatever goes wrong, no staged file is left behind."""
    # The staged name ends in dest's own name: systemd-analyze verify needs a unit's suffix.
    dest = Path(entry["dest"])
    handle, name = tempfile.mkstemp(prefix=".kastro-", suffix=f"-{dest.name}", dir=dest.parent)
    temp = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(entry["content"])
        os.chown(temp, entry["uid"], entry["gid"])
        temp.chmod(entry["mode_bits"])
        if entry.get("validate"):
            _validate(module, entry, name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _validate(module: AnsibleModule, entry: dict[str, Any], staged: str) -> None:
    command = [part.replace("%s", staged) for part in shlex.split(entry["validate"])]
    rc, out_text, err_text = module.run_command(command)
    if rc != 0:
        reason = (err_text or out_text).strip()
        raise EntryError(f"{entry['dest']}: the new file fails {entry['validate']!r}: {reason}")


def make_directory(entry: dict[str, Any]) -> None:
    dest = Path(entry["dest"])
    if entry["current"] is None:
        dest.mkdir()
    os.chown(dest, entry["uid"], entry["gid"])
    dest.chmod(entry["mode_bits"])


def make_link(entry: dict[str, Any]) -> None:
    temp = Path(f"{entry['dest']}.kastro-link")
    temp.unlink(missing_ok=True)
    temp.symlink_to(entry["src"])
    temp.replace(entry["dest"])


def apply_all(module: AnsibleModule, pending: list[dict[str, Any]]) -> None:
    """Directories first, then every new file staged and validated, then all put in place."""
    for entry in pending:
        if entry["state"] == "directory":
            make_directory(entry)
    staged: list[tuple[Path, str]] = []
    try:
        for entry in pending:
            if entry["state"] == "file":
                staged.append((stage_file(module, entry), entry["dest"]))
    except BaseException:
        for temp, _ in staged:
            temp.unlink()
        raise
    for temp, dest in staged:
        temp.replace(dest)
    for entry in pending:
        if entry["state"] == "link":
            make_link(entry)


def _diff(entry: dict[str, Any]) -> dict[str, str]:
    if entry["state"] == "file":
        before, after = _read(entry["dest"]) or "", entry["content"]
    else:
        before, after = "", f"{entry['state']} {entry.get('src') or entry.get('mode')}\n"
    return {
        "before_header": entry["dest"],
        "after_header": entry["dest"],
        "before": before,
        "after": after,
    }


def record(manifest: str, entries: list[dict[str, Any]], whole: Sequence[str] = ()) -> None:
    """What Kastro wrote, path -> SHA-256 of the content, merged into the host's manifest
    (kastro-aide tells Kastro's own changes from foreign ones with it). Written only when it
    differs, atomically, 0600; it is bookkeeping, not a change of the host's configuration."""
    import hashlib
    import json

    path = Path(manifest)
    try:
        known = json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        known = {}
    wanted = dict(known)
    for entry in entries:
        if entry.get("state", "file") == "file" and entry.get("content") is not None:
            digest = hashlib.sha256(entry["content"].encode("utf-8")).hexdigest()
            wanted[entry["dest"]] = digest
    for name in whole:
        wanted[name] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
    if wanted == known:
        return
    # 0755 like the roles make it: their own subdirectories (firewall, links) are read by their
    # confined collectors; the manifest itself is 0600.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"files": wanted}, indent=1, sort_keys=True), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def main() -> None:
    files_spec = {"type": "list", "elements": "dict", "required": True, "options": _ENTRY_SPEC}
    module = AnsibleModule(
        argument_spec={
            "files": files_spec,
            "manifest": {"type": "str", "default": MANIFEST},
            "record": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        entries = check_all(module.params["files"])
        pending = [entry for entry in entries if needs_change(entry)]
        diffs = [_diff(entry) for entry in pending] if module._diff else []
        if not module.check_mode:
            apply_all(module, pending)
            if module.params["manifest"]:
                record(module.params["manifest"], entries, module.params["record"])
    except (EntryError, OSError) as err:
        module.fail_json(msg=str(err))
    result: dict[str, Any] = {
        "changed": bool(pending),
        "changed_files": [e["dest"] for e in pending],
    }
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
