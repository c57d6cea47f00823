"""The version store: every configuration version, one JSON file each, under the state
directory, so history outlives the control plane.

``.corral/config/v000042.json`` holds version 42 whole (every service's layers and what
changed from 41). A version is written to a temporary file, flushed to disk, then linked
to its final name: ``link`` fails when the name exists, which makes each commit a
compare-and-swap on the version number that holds across processes, and a reader only
ever sees complete files. Files are never changed once written; the store caches them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from corral.config._errors import UnknownVersionError, VersionConflictError
from corral.config._model import ConfigVersion, ServiceConfig, diff

_NAME = re.compile(r"^v(\d{6,})\.json$")


class ConfigStore:
    """Configuration versions in ``directory`` (created 0700 on first commit)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[int, ConfigVersion] = {}

    def latest(self) -> ConfigVersion | None:
        numbers = self._numbers()
        return self.get(numbers[-1]) if numbers else None

    def get(self, version: int) -> ConfigVersion:
        found = self._cache.get(version)
        if found is not None:
            return found
        try:
            text = self._path(version).read_text(encoding="utf-8")
        except FileNotFoundError:
            numbers = self._numbers()
            raise UnknownVersionError(version, numbers[-1] if numbers else 0) from None
        found = ConfigVersion.model_validate_json(text)
        self._cache[version] = found
        return found

    def history(self) -> list[ConfigVersion]:
        """Every version, oldest first."""
        return [self.get(number) for number in self._numbers()]

    def commit(
        self,
        *,
        expected: int,
        services: Mapping[str, ServiceConfig],
        author: str,
        kind: str,
        message: str = "",
        environment: str | None = None,
        now: float | None = None,
    ) -> ConfigVersion:
        """Write version ``expected + 1``; VersionConflictError if ``expected`` is not the
        latest version (0: none yet), so a change computed from an old version is never
        written over a newer one."""
        latest = self.latest()
        actual = latest.version if latest else 0
        if actual != expected:
            raise VersionConflictError(expected, actual)
        record = ConfigVersion(
            version=expected + 1,
            time=time.time() if now is None else now,
            author=author,
            message=message,
            kind=kind,
            environment=environment,
            services=dict(sorted(services.items())),
            changes=diff(latest.services if latest else {}, services),
        )
        self._write(record)
        self._cache[record.version] = record
        return record

    def _write(self, record: ConfigVersion) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self._path(record.version)
        tmp = self.directory / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(record.model_dump_json(indent=1))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise VersionConflictError(record.version - 1, self._numbers()[-1]) from None
        finally:
            tmp.unlink(missing_ok=True)
        # The new name is durable only once the directory is.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _path(self, version: int) -> Path:
        return self.directory / f"v{version:06d}.json"

    def _numbers(self) -> list[int]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                int(match.group(1))
                for entry in os.scandir(self.directory)
                if (match := _NAME.match(entry.name))
            )
        return []
