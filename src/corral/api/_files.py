"""Where a running system publishes its API address and admin token.

``<state_dir>/api.json`` holds the URL and the orchestrator's pid; ``<state_dir>/token``
(mode 0600, created before anything is written into it) holds the admin bearer token.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunFiles:
    state_dir: Path

    @property
    def api_file(self) -> Path:
        return self.state_dir / "api.json"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    def publish(self, *, url: str, pid: int, admin_token: str, extra: dict[str, Any]) -> None:
        """Write the token (0600) and then the address, each atomically."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.token_file, admin_token)
        _write_private(self.api_file, json.dumps({"url": url, "pid": pid, **extra}))

    def read(self) -> tuple[dict[str, Any], str] | None:
        """The published address and token, or None when no system is running here."""
        try:
            info = json.loads(self.api_file.read_text())
            token = self.token_file.read_text().strip()
        except (OSError, ValueError):
            return None
        return info, token

    def clear(self) -> None:
        for path in (self.api_file, self.token_file):
            path.unlink(missing_ok=True)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)
