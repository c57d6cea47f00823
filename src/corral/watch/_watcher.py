"""The watch loop: files change -> the services they belong to reload, each once.

Talks to the running system only through :class:`Target` (the control API in the CLI,
an in-memory fake in unit tests) and reports through ``on_event``, so the same loop
serves ``corral up --watch`` and ``corral watch``.

Bursts: watchfiles groups changes until none came for ``step`` ms (at most ``debounce``
ms), so an editor's write-rename-chmod or a ``git checkout`` of a thousand files is one
batch; changes that arrive while a batch reloads are kept by watchfiles and make the
next batch. Each affected service reloads once per batch, independent services at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import watchfiles

from corral.watch._located import Located, locate
from corral.watch._sources import Changes, SourceMap

__all__ = [
    "ManifestChanged",
    "ManifestOutcome",
    "ReloadFailed",
    "ReloadOutcome",
    "Reloaded",
    "Reloading",
    "Target",
    "WatchEvent",
    "WatchProblem",
    "Watcher",
]


@dataclass(frozen=True)
class ReloadOutcome:
    service: str
    ok: bool
    reason: str | None = None
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestOutcome:
    changed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None
    """The manifest is invalid (every problem located): nothing changed."""


class Target(Protocol):
    """The running system, as the watcher drives it."""

    async def reload(self, service: str) -> ReloadOutcome: ...

    async def apply_manifest(self) -> ManifestOutcome: ...


@dataclass(frozen=True)
class Reloading:
    changes: Changes


@dataclass(frozen=True)
class Reloaded:
    service: str
    seconds: float
    """From the batch's arrival to the last old instance stopped."""


@dataclass(frozen=True)
class ReloadFailed:
    service: str
    seconds: float
    reason: str
    located: Located | None
    """The file and line of the new code's error, when its log shows a traceback."""


@dataclass(frozen=True)
class ManifestChanged:
    """The saved manifest was applied (``outcome.error``: it was invalid, nothing changed)."""

    outcome: ManifestOutcome
    seconds: float


@dataclass(frozen=True)
class WatchProblem:
    message: str


WatchEvent = Reloading | Reloaded | ReloadFailed | ManifestChanged | WatchProblem


@dataclass
class Watcher:
    sources: SourceMap
    target: Target
    on_event: Callable[[WatchEvent], None]
    root: Path | None = None
    """The project's folder: tracebacks are located at its own files first."""
    step_ms: int = 50
    debounce_ms: int = 1600
    reread: Callable[[], SourceMap] | None = None
    """Reads the sources again after the manifest changed (new services, patterns)."""
    batches: int = field(default=0, init=False)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set. A folder that does not exist or cannot be read
        is reported, never a crash."""
        roots = []
        for root in self.sources.roots:
            if root.is_dir():
                roots.append(root)
            else:
                self.on_event(WatchProblem(f"not watching {root}: no such folder"))
        if not roots:
            self.on_event(WatchProblem("nothing to watch"))
            await stop.wait()
            return
        async for batch in watchfiles.awatch(
            *roots,
            stop_event=stop,
            step=self.step_ms,
            debounce=self.debounce_ms,
            ignore_permission_denied=True,
            watch_filter=watchfiles.DefaultFilter(),
        ):
            await self.handle(Path(path) for _, path in batch)

    async def handle(self, paths: Iterable[Path]) -> Changes:
        """Reload what one batch of changed files asks for; what it asked for."""
        began = time.monotonic()
        changes = self.sources.changes(paths)
        if not changes:
            return changes
        self.batches += 1
        if changes.manifest:
            await self._apply_manifest(began)
        if not changes.services:
            return changes
        self.on_event(Reloading(changes))
        await asyncio.gather(*(self._reload(service, began) for service in changes.services))
        return changes

    async def _apply_manifest(self, began: float) -> None:
        try:
            outcome = await self.target.apply_manifest()
        except Exception as exc:  # the API went away, say: report, keep watching
            outcome = ManifestOutcome(error=str(exc))
        self.on_event(ManifestChanged(outcome, time.monotonic() - began))
        if outcome.error is None and self.reread is not None:
            try:
                self.sources = self.reread()
            except Exception as exc:  # read by the system a moment ago; now unreadable
                self.on_event(WatchProblem(f"cannot read the manifest again: {exc}"))

    async def _reload(self, service: str, began: float) -> None:
        try:
            outcome = await self.target.reload(service)
        except Exception as exc:  # the API went away, say: report, keep watching
            self.on_event(ReloadFailed(service, time.monotonic() - began, str(exc), None))
            return
        seconds = time.monotonic() - began
        if outcome.ok:
            self.on_event(Reloaded(service, seconds))
            return
        reason = outcome.reason or "the new code did not start"
        located = locate(outcome.log_tail, root=self.root)
        self.on_event(ReloadFailed(service, seconds, reason, located))
