"""The systems this user runs, so ``corral ls`` can list them from any directory.

Each running orchestrator keeps one small file in a per-user folder, written when ``up``
begins and removed when ``down`` ends: ``$XDG_RUNTIME_DIR/corral/systems/`` (a per-login
tmpfs that the session manager empties at logout, so nothing outlives a reboot), or
``$XDG_STATE_HOME/corral/systems/`` (``~/.local/state/...``) where there is no runtime
directory. The file only points at the system's state directory, where its run state,
API address and token already live; nothing secret is copied out.

An orchestrator killed with SIGKILL cannot remove its file: readers check that the
recorded process (pid and creation time) still lives and delete the entries of the
dead, so the folder cleans itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError

from corral.runtime import _runstate

process_alive = _runstate.alive
process_create_time = _runstate.process_create_time
"""Whether a process still lives (pid, and its creation time when known)."""


class RunningSystem(BaseModel):
    """One entry: which system, where its manifest and state are, which process runs it."""

    system: str
    manifest: str
    state_dir: str
    pid: int
    create_time: float | None = None
    started_at: float | None = None


def systems_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user folder of running systems (see the module docstring)."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "corral" / "systems"
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "corral" / "systems"


class SystemsIndex:
    """The folder of running systems: one JSON file per state directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or systems_dir()

    def _entry(self, state_dir: str | Path) -> Path:
        # One file per state directory (one system per folder: its lock sees to that).
        key = hashlib.sha256(str(Path(state_dir).absolute()).encode()).hexdigest()[:16]
        return self.directory / f"{key}.json"

    def register(self, entry: RunningSystem) -> None:
        """Record a system that starts running (replacing any older entry for it)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._entry(entry.state_dir)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(entry.model_dump_json(), encoding="utf-8")
        tmp.replace(path)

    def unregister(self, state_dir: str | Path, pid: int) -> None:
        """Forget a system that stopped, if the entry is still the one ``pid`` wrote."""
        path = self._entry(state_dir)
        entry = self._read(path)
        if entry is not None and entry.pid == pid:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def running(self) -> list[RunningSystem]:
        """Every system whose orchestrator still lives, by name then path; the entries
        of dead ones are deleted on the way."""
        found: list[RunningSystem] = []
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return []
        for path in paths:
            entry = self._read(path)
            if entry is not None and process_alive(entry.pid, entry.create_time):
                found.append(entry)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        return sorted(found, key=lambda e: (e.system, e.manifest))

    @staticmethod
    def _read(path: Path) -> RunningSystem | None:
        try:
            return RunningSystem.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None


__all__ = [
    "RunningSystem",
    "SystemsIndex",
    "process_alive",
    "process_create_time",
    "systems_dir",
]
