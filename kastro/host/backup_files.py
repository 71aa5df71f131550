"""What a backup held, recorded before borg reads it, and a restored copy compared with it.

A file manifest lists every regular file below a dataset's paths with its size, mtime and
SHA-256. Hashing a share every night costs a full read, so a file whose path, size, mtime and
inode are those of the previous manifest keeps its hash (borg's own files cache works alike).

A drill compares the restored files with the manifest of their archive: a file with the
recorded size and mtime must have the recorded hash (else it is corrupt); a file whose mtime
differs was written while the backup ran (counted apart, not a failure: the next backup takes
it); a recorded file that is not in the restore is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def walk(roots: list[str]) -> list[Path]:
    """Every regular file below `roots`, never following a symbolic link, in a stable order."""
    found = []
    for root in roots:
        for directory, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(directory, name)
                if stat.S_ISREG(path.lstat().st_mode):
                    found.append(path)
    return found


def manifest(roots: list[str], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """{path: {size, mtime_ns, inode, sha256}} of every file below `roots`."""
    old = (previous or {}).get("files") or {}
    files: dict[str, Any] = {}
    hashed = 0
    for path in walk(roots):
        try:
            st = path.lstat()
            entry: dict[str, Any] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "inode": st.st_ino,
            }
            known = old.get(str(path))
            if known and all(known.get(k) == v for k, v in entry.items()):
                entry["sha256"] = known["sha256"]
            else:
                entry["sha256"] = sha256(path)
                hashed += 1
        except FileNotFoundError:  # deleted while we walked: not part of this backup
            continue
        files[str(path)] = entry
    return {"files": files, "hashed": hashed}


def compare(recorded: dict[str, Any], restored_root: Path) -> Counter[str]:
    """Each recorded file's fate in a restore below `restored_root`: ok, changed (written
    during the backup), corrupt or missing."""
    results: Counter[str] = Counter()
    for name, entry in (recorded.get("files") or {}).items():
        copy = restored_root / name.lstrip("/")
        try:
            st = copy.lstat()
        except FileNotFoundError:
            results["missing"] += 1
            continue
        if st.st_size != entry["size"] or st.st_mtime_ns != entry["mtime_ns"]:
            results["changed"] += 1
        elif sha256(copy) == entry["sha256"]:
            results["ok"] += 1
        else:
            results["corrupt"] += 1
    return results


def write_json(path: Path, data: Any) -> None:
    """`data` as JSON in `path`, 0600, replaced whole."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, sort_keys=True)
    tmp.replace(path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
