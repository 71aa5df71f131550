"""Build kastro-host.pyz: the host programs (kastro.host, monitors) as one archive for the hosts.

One file, not a tree copied file by file: a host runs exactly the programs of one build, a
change replaces the whole archive atomically, and the archive is byte-for-byte the same for
the same sources (sorted entries, fixed timestamps and modes), so a re-run of a playbook that
changes nothing copies nothing. Hosts need no pip and no virtualenv: python3 imports the
archive directly (zipimport), through the wrappers the roles install in /usr/local/sbin.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the kastro package directory
ROOT = PACKAGE.parent
# What hosts get: the host programs and the packet monitors, nothing of the controller.
MEMBERS = ("kastro/__init__.py", "kastro/host", "monitors")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def sources() -> list[Path]:
    files: list[Path] = []
    for member in MEMBERS:
        path = ROOT / member
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return sorted(files)


def archive_bytes() -> bytes:
    """The archive's exact bytes for the current sources."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sources():
            info = zipfile.ZipInfo(path.relative_to(ROOT).as_posix(), date_time=FIXED_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


class BuildDirError(ValueError):
    """The build directory is not the controller user's own directory."""


def private_directory(directory: Path) -> None:
    """Create `directory` 0700 if missing, close it to 0700 if open; refuse one that is not a
    directory or that another user owns.

    Root runs the archive on every host, so whoever can write here could run code on all of
    them: the directory must be the controller user's own, closed to group and others."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise BuildDirError(
            f"{directory} is not a directory (a link?); remove it and run again, "
            "Kastro creates it 0700"
        )
    if st.st_uid != os.getuid():
        raise BuildDirError(
            f"{directory} belongs to user id {st.st_uid}, not to you ({os.getuid()}); "
            "use a build directory of your own (host_programs_build_dir)"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        directory.chmod(0o700)  # yours but open (an older Kastro made it 0755): close it


def build(output: Path) -> dict[str, object]:
    """Write the archive to `output` unless it already holds these bytes; say what happened."""
    private_directory(output.parent)
    data = archive_bytes()
    digest = hashlib.sha256(data).hexdigest()
    changed = not output.exists() or output.read_bytes() != data
    if changed:
        tmp = output.with_name(f".{output.name}.{digest[:12]}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(output)  # atomic: two runs building at once leave one whole archive
    return {"path": str(output), "sha256": digest, "changed": changed}


def build_json(output: Path) -> str:
    return json.dumps(build(output), sort_keys=True)
