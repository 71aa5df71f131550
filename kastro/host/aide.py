"""kastro-aide: AIDE's daily check as metrics, with Kastro's own changes told apart.

AIDE compares the file system with its baseline and lists added, removed and changed files.
Kastro changes files too (a converge rewrites a ruleset, a sysctl file): those changes are
expected, and alerting on them would teach admins to ignore AIDE. Each Kastro role records
what it wrote in a manifest (path -> SHA-256 of the content); a changed file whose content
is exactly the manifest's is Kastro's. Packages change files too (unattended security
upgrades): a changed or added file whose MD5 is the one dpkg recorded for it
(/var/lib/dpkg/info/*.md5sums) is the package's. When every change is Kastro's or a
package's, the baseline is updated (`aide --update`) so the next check starts clean; when any
change is foreign, the baseline is left alone and the metrics say how many, until an admin
accepts them (`kastro-aide accept`, after looking).

Metrics (node_exporter textfile): kastro_aide_check_success, kastro_aide_files{change,origin},
kastro_aide_last_check_timestamp_seconds, kastro_aide_baseline_updated_timestamp_seconds.
AIDE's exit code is a bit mask (1 added, 2 removed, 4 changed); 14 and above are errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kastro.host.textfile import write_text

SECTIONS = {"Added entries:": "added", "Removed entries:": "removed", "Changed entries:": "changed"}
ENTRY = re.compile(r"^[a-zA-Z!?-]\S*(?: [^:]*)?: (/.*)$")
FIRST_ERROR = 14


@dataclass
class Report:
    """The files one `aide --check` listed, by kind of change."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def by_kind(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def parse_report(text: str) -> Report:
    """AIDE's plain report: the entry lists under "Added/Removed/Changed entries:"."""
    report = Report()
    section: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in SECTIONS:
            section = report.by_kind()[SECTIONS[stripped]]
            continue
        if stripped.startswith("Detailed information") or stripped.startswith("The attributes"):
            section = None
            continue
        if section is None or not stripped or stripped.startswith("---"):
            continue
        match = ENTRY.match(stripped)
        if match:
            section.append(match.group(1))
    return report


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def package_digests(paths: set[str], info: Path = Path("/var/lib/dpkg/info")) -> dict[str, str]:
    """dpkg's recorded MD5 of each of `paths` that a package ships (conffiles are not in the
    md5sums files: a changed /etc file is never "the package's")."""
    found: dict[str, str] = {}
    wanted = {p.lstrip("/") for p in paths}
    for md5sums in sorted(info.glob("*.md5sums")):
        try:
            lines = md5sums.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            digest, _, name = line.partition("  ")
            if name in wanted:
                found["/" + name] = digest
    return found


def md5_of(path: Path) -> str | None:
    try:
        return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True)
class Verdict:
    kastro: Mapping[str, int]
    foreign: Mapping[str, int]
    foreign_paths: tuple[str, ...]
    package: Mapping[str, int] = field(default_factory=dict)

    @property
    def only_kastro(self) -> bool:
        return not self.foreign_paths


def classify(
    report: Report,
    manifest: Mapping[str, str],
    root: Path = Path("/"),
    packages: Mapping[str, str] | None = None,
) -> Verdict:
    """Kastro's changes: files in the manifest whose content now is what Kastro wrote (a
    removed file is Kastro's only if the manifest says it removed it). A package's: content
    equal to dpkg's record (`packages`: path -> MD5). Anything else is foreign."""
    counts: dict[str, dict[str, int]] = {"kastro": {}, "package": {}, "foreign": {}}
    foreign_paths = []
    for kind, paths in report.by_kind().items():
        for tally in counts.values():
            tally[kind] = 0
        for path in paths:
            origin = _origin(kind, path, manifest, root, packages or {})
            counts[origin][kind] += 1
            if origin == "foreign":
                foreign_paths.append(path)
    return Verdict(
        kastro=counts["kastro"],
        foreign=counts["foreign"],
        foreign_paths=tuple(sorted(foreign_paths)),
        package=counts["package"],
    )


def _origin(
    kind: str, path: str, manifest: Mapping[str, str], root: Path, packages: Mapping[str, str]
) -> str:
    wanted = manifest.get(path)
    if kind == "removed":
        return "kastro" if wanted == "absent" else "foreign"
    here = root / path.lstrip("/")
    if wanted is not None and sha256_of(here) == wanted:
        return "kastro"
    if path in packages and md5_of(here) == packages[path]:
        return "package"
    return "foreign"


def load_manifest(path: Path) -> dict[str, str]:
    """The managed-file manifest ({"files": {path: sha256 | "absent"}}); none yet is empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"{path}: not a Kastro manifest (no 'files' mapping)")
    return {str(k): str(v) for k, v in files.items()}


def metrics_text(verdict: Verdict | None, exit_code: int, now: float, updated: float) -> str:
    """The textfile node_exporter reads (written whole, atomically, by the caller)."""
    ok = 1 if exit_code < FIRST_ERROR and verdict is not None else 0
    lines = [
        "# HELP kastro_aide_check_success Whether AIDE's last check ran (1) or failed (0).",
        "# TYPE kastro_aide_check_success gauge",
        f"kastro_aide_check_success {ok}",
        "# HELP kastro_aide_files Files AIDE found different from the baseline.",
        "# TYPE kastro_aide_files gauge",
    ]
    if verdict is not None:
        origins = (("kastro", verdict.kastro), ("package", verdict.package),
                   ("foreign", verdict.foreign))  # fmt: skip
        for origin, counts in origins:
            for change, count in sorted(counts.items()):
                lines.append(f'kastro_aide_files{{change="{change}",origin="{origin}"}} {count}')
    lines += [
        "# HELP kastro_aide_last_check_timestamp_seconds When AIDE last checked.",
        "# TYPE kastro_aide_last_check_timestamp_seconds gauge",
        f"kastro_aide_last_check_timestamp_seconds {now:.0f}",
        "# HELP kastro_aide_baseline_updated_timestamp_seconds When the baseline last changed.",
        "# TYPE kastro_aide_baseline_updated_timestamp_seconds gauge",
        f"kastro_aide_baseline_updated_timestamp_seconds {updated:.0f}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Paths:
    """Where AIDE's config and databases are, and where Kastro's manifest and metrics go."""

    config: Path
    database: Path  # the config's database_in
    new_database: Path  # the config's database_out
    manifest: Path
    metrics: Path


def aide(paths: Paths, *args: str) -> int:
    from kastro.host.commands import run

    return run("aide", f"--config={paths.config}", *args, check=False).returncode


def _install_new(paths: Paths) -> float:
    """The database AIDE just wrote becomes the baseline (atomically, 0600)."""
    import time

    paths.new_database.chmod(0o600)
    paths.new_database.replace(paths.database)
    return time.time()


def init(paths: Paths) -> int:
    """A first baseline (slow on a big host: the role starts it in the background)."""
    if aide(paths, "--init") >= FIRST_ERROR:
        return 1
    _install_new(paths)
    return 0


def check(paths: Paths, now: float) -> Verdict | None:
    """One check: metrics written; the baseline updated when only Kastro changed files."""
    from kastro.host.commands import run

    done = run("aide", f"--config={paths.config}", "--check", check=False)
    verdict = None
    if done.returncode < FIRST_ERROR:
        report = parse_report(done.stdout)
        listed = set(report.added) | set(report.changed)
        verdict = classify(report, load_manifest(paths.manifest), packages=package_digests(listed))
    updated = paths.database.stat().st_mtime if paths.database.exists() else 0.0
    explained = verdict is not None and done.returncode and verdict.only_kastro
    if explained and aide(paths, "--update") < FIRST_ERROR:
        updated = _install_new(paths)
    write_text(paths.metrics, metrics_text(verdict, done.returncode, now, updated))
    return verdict


def accept(paths: Paths) -> int:
    """After an admin looked at the foreign changes: they become the baseline."""
    if aide(paths, "--update") >= FIRST_ERROR:
        return 1
    _install_new(paths)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="kastro-aide", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("init", "check", "accept"))
    parser.add_argument("--config", type=Path, default=Path("/etc/aide/aide.conf"))
    parser.add_argument("--database", type=Path, default=Path("/var/lib/aide/aide.db"))
    parser.add_argument("--new-database", type=Path, default=Path("/var/lib/aide/aide.db.new"))
    parser.add_argument("--manifest", type=Path, default=Path("/var/lib/kastro/managed-files.json"))
    parser.add_argument(
        "--metrics", type=Path, default=Path("/var/lib/prometheus/node-exporter/kastro_aide.prom")
    )
    args = parser.parse_args(argv)
    paths = Paths(args.config, args.database, args.new_database, args.manifest, args.metrics)
    if args.command == "init":
        return init(paths)
    if args.command == "accept":
        return accept(paths)
    verdict = check(paths, time.time())
    if verdict is None:
        print("AIDE check failed / ο έλεγχος AIDE απέτυχε")
        return 1
    for path in verdict.foreign_paths:
        print(f"foreign change / ξένη αλλαγή: {path}")
    return 2 if verdict.foreign_paths else 0


if __name__ == "__main__":
    raise SystemExit(main())
