"""One incident as a tar file for the authority or a court: its log records as written (each
with its hash and its predecessor's), every artefact and draft it references under its
SHA-256, and a manifest. Built from the log alone, with fixed owners, modes and times, so
exporting again gives the same bytes (anyone can check a copy by rebuilding it).
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from kastro.nis2.log import IncidentLog, canonical


def referenced(record: dict[str, Any]) -> list[str]:
    """The SHA-256 of every artefact and draft a log record refers to."""
    data = record.get("data") or {}
    return [d for d in [data.get("sha256"), *(data.get("files") or {}).values()] if d]


def bundle(log: IncidentLog, incident: str) -> bytes:
    records = [r for r in log.records() if r.get("incident") == incident]
    digests = sorted({d for r in records for d in referenced(r)})
    names = {
        name: digest
        for r in records
        for name, digest in ((r.get("data") or {}).get("files") or {}).items()
    }  # the latest draft of each name
    manifest = {
        "incident": incident,
        "records": [{"seq": r["seq"], "hash": r["hash"], "prev": r["prev"]} for r in records],
        "drafts": dict(sorted(names.items())),
        "artefacts": digests,
    }
    when = int(records[-1]["logged"]) if records else 0
    members = [
        ("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"),
        ("log.jsonl", b"".join(canonical(r) + b"\n" for r in records)),
        *((f"artefacts/{d}", log.artefact(d)) for d in digests),
    ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(f"{incident}/{name}")
            info.size, info.mtime, info.mode = len(data), when, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
