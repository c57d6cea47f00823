"""Delivery: rendered config -> files Envoy watches (file-based xDS). The only writer.

Envoy reloads a ``path_config_source`` file when a file is *moved* onto that path (an
edit in place is ignored, because only a rename is atomic). So every document is written
to a temporary file in the same directory, flushed, then renamed over the target.
Unchanged documents are not rewritten, so an endpoint change touches one small EDS file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from corral.gateway._envoy import Json, canonical


class XdsWriter:
    """Writes documents under ``directory`` atomically, skipping unchanged ones."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: dict[str, str] = {}

    def write(self, relative: str, document: Json) -> bool:
        """Write one document; True when the file changed."""
        text = canonical(document)
        if self._written.get(relative) == text:
            return False
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            Path(temp).replace(target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self._written[relative] = text
        return True

    def write_many(self, documents: dict[str, Json]) -> list[str]:
        """Write several documents in the given order; the relative paths that changed."""
        return [relative for relative, doc in documents.items() if self.write(relative, doc)]
