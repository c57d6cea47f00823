"""Where finished runs are kept: one JSON file per run under ``.corral/chaos/runs/``,
newest first when listed, the oldest dropped beyond :data:`KEEP_RUNS` (the control
plane records them; ``corral chaos list`` and the dashboard read them back).

A report carries what its probes saw (a command's last lines, an answer's status), which
may hold a secret a service or a command printed: the store redacts the whole report's
text with the control plane's redactor (the secrets of every instance, as written and
as escaped in JSON) before it is written, so neither the file nor the API holds one."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from corral.chaos._report import Report

KEEP_RUNS = 100
_ID = re.compile(r"^run-[0-9]{1,20}(-[0-9]{1,6})?$")


def valid_id(run_id: str) -> bool:
    """A run id can name a file (and nothing else: no path, no dots)."""
    return bool(_ID.match(run_id))


class RunStore:
    def __init__(self, directory: Path, *, redact: Callable[[str], str] | None = None) -> None:
        self.directory = directory
        self._redact = redact

    def record(self, report: Report) -> Report:
        """Keep ``report`` (an id already taken gets a suffix, so none is overwritten)."""
        if not valid_id(report.id):
            raise ValueError(f"invalid run id {report.id!r}")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        base, n = report.id, 0
        while (self.directory / f"{report.id}.json").exists():
            n += 1
            report = report.model_copy(update={"id": f"{base}-{n}"})
        text = report.model_dump_json(indent=1)
        if self._redact is not None:
            redacted = self._redact(text)
            if redacted != text:
                text, report = redacted, Report.model_validate_json(redacted)
        partial = self.directory / f".{report.id}.json.tmp"
        partial.write_text(text)
        partial.replace(self.directory / f"{report.id}.json")  # whole or absent
        for old in self._files()[KEEP_RUNS:]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return report

    def runs(self, limit: int = 20) -> list[Report]:
        """The newest runs first (a file that cannot be read is skipped)."""
        out: list[Report] = []
        for path in self._files():
            if len(out) >= limit:
                break
            try:
                out.append(Report.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError):
                continue
        return out

    def get(self, run_id: str) -> Report | None:
        if not valid_id(run_id):
            return None
        try:
            return Report.model_validate_json((self.directory / f"{run_id}.json").read_bytes())
        except (OSError, ValidationError):
            return None

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.glob("run-*.json") if valid_id(p.stem)]
        return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)
