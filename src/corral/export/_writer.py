"""Writing an :class:`Export` into a folder without ever losing someone's file.

A marker (``.corral-export.json``) records every file written and its content hash. A
file is overwritten only when the marker says the export wrote it and it is unchanged
since; a file someone else wrote, or edited, is a conflict, and nothing at all is
written unless ``force``. Files a previous export of the same targets wrote and this one
does not (a removed service) are deleted, again only if unchanged.

``compose/.env`` holds the generated secrets: created once with random values, then only
missing variables are added; never in the marker, never removed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import CorralError
from corral.export._model import Export, Target

MARKER = ".corral-export.json"
ENV_FILE = "compose/.env"


def _digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    secrets: str | None = None
    """What happened to compose/.env: created, updated, kept (or None: not needed)."""


@dataclass(frozen=True)
class Conflict:
    path: str
    reason: str


class OverwriteError(CorralError):
    """Files in the way that the export did not write (or that were edited since)."""

    def __init__(self, folder: Path, conflicts: Iterable[Conflict]) -> None:
        self.folder = folder
        self.conflicts = tuple(conflicts)
        listed = "\n".join(f"  {c.path}: {c.reason}" for c in self.conflicts)
        super().__init__(
            f"{len(self.conflicts)} file(s) in {folder} would be overwritten:\n{listed}\n"
            "nothing was written; move them away, or pass --force to overwrite them"
        )


def _read_marker(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _state(path: Path) -> str | None:
    try:
        return _digest(path.read_bytes())
    except FileNotFoundError:
        return None


def write_export(
    folder: Path, export: Export, *, targets: Iterable[Target], force: bool = False
) -> WriteReport:
    """Write ``export`` under ``folder`` (see the module docstring for the rules)."""
    known = _read_marker(folder)
    prefixes = {f"{t}/" for t in targets}
    conflicts = []
    for relative in export.files:
        on_disk = _state(folder / relative)
        if on_disk is None or force:
            continue
        if relative not in known:
            conflicts.append(Conflict(relative, "not written by corral export"))
        elif on_disk != known[relative]:
            conflicts.append(Conflict(relative, "changed since corral export wrote it"))
    if conflicts:
        raise OverwriteError(folder, conflicts)
    report = WriteReport()
    recorded = dict(known)
    for relative, text in export.files.items():
        path = folder / relative
        digest = _digest(text)
        if _state(path) == digest:
            report.unchanged.append(relative)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".corral-tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(path)
            report.written.append(relative)
        recorded[relative] = digest
    for relative in sorted(set(known) - set(export.files)):
        if not any(relative.startswith(p) for p in prefixes):
            continue
        path = folder / relative
        if _state(path) in (known[relative], None):
            path.unlink(missing_ok=True)
            report.removed.append(relative)
            del recorded[relative]
    if export.secrets:
        report.secrets = ensure_secrets(folder / ENV_FILE, export.secrets)
    marker = {"generator": "corral export", "files": dict(sorted(recorded.items()))}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return report


def ensure_secrets(path: Path, names: Iterable[str]) -> str:
    """Give every variable in ``names`` a random value in ``path`` unless it has one."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    defined = {line.split("=", 1)[0].strip() for line in existing.splitlines() if "=" in line}
    missing = [name for name in names if name not in defined]
    if not missing:
        return "kept"
    lines = [] if existing else ["# Secrets for compose.yaml, generated once by corral export."]
    lines += [f"{name}={secrets.token_hex(16)}" for name in missing]
    text = existing + ("" if not existing or existing.endswith("\n") else "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return "updated" if existing else "created"
