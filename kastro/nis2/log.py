"""The incident log: append-only JSON lines, each holding the SHA-256 of the one before, so a
line changed, removed or inserted afterwards breaks the chain at that line (`verify`).

Artefacts (a pcap, an EVE extract, a scan report, each draft) are copied once into
`artefacts/` under their SHA-256 and referenced by it from the log. The directory and its
files are the controller's, 0700/0600: reports name people and addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
LOG_FILE = "log.jsonl"
ARTEFACTS = "artefacts"


class LogError(RuntimeError):
    """The log cannot be read or trusted; the message names the line."""


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class IncidentLog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOG_FILE

    def records(self) -> list[dict[str, Any]]:
        """Every record, the chain checked first."""
        records = self._read()
        self._check(records)
        return records

    def _read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise LogError(f"{self.path}: {error}") from error
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError as error:
                raise LogError(
                    f"{self.path}, γραμμή / line {number}: not JSON ({error})"
                ) from error
            if not isinstance(record, dict):
                raise LogError(f"{self.path}, γραμμή / line {number}: not a record")
            records.append(record)
        return records

    def _check(self, records: list[dict[str, Any]]) -> None:
        previous = GENESIS
        for number, record in enumerate(records, 1):
            if record.get("prev") != previous or record.get("hash") != record_hash(record):
                raise LogError(
                    f"{self.path}, γραμμή / line {number}: η αλυσίδα σπάει / the hash chain "
                    "breaks here: the log was changed after it was written; keep this copy "
                    "as evidence and restore the log from a backup"
                )
            previous = record["hash"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(
        self, entries: list[dict[str, Any]], now: float | None = None
    ) -> list[dict[str, Any]]:
        """Write the entries at the end of the chain, all or none (one write, then fsync)."""
        with self._locked():
            records = self.records()
            previous = records[-1]["hash"] if records else GENESIS
            stamp = time.time() if now is None else now
            written, text = [], ""
            for offset, entry in enumerate(entries):
                record = {
                    **entry,
                    "seq": len(records) + offset + 1,
                    "logged": stamp,
                    "prev": previous,
                }
                record["hash"] = record_hash(record)
                previous = record["hash"]
                written.append(record)
                text += canonical(record).decode() + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            return written

    def store_artefact(self, source: Path) -> str:
        """A copy under its SHA-256 (kept if already there); the digest."""
        digest = file_sha256(source)
        self.put_bytes(source.read_bytes(), digest)
        return digest

    def put_bytes(self, data: bytes, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        target = self.directory / ARTEFACTS / digest
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = target.with_suffix(".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(target)
        return digest

    def artefact(self, digest: str) -> bytes:
        data = (self.directory / ARTEFACTS / digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise LogError(f"artefact {digest} does not match its SHA-256: it was changed")
        return data
