"""The instance registry: the single source of truth of live instances.

The supervisor writes it; the gateway, discovery clients, the control-plane API and the
dashboard watch it. Every change produces a new immutable :class:`Snapshot` with a
higher version, so a watcher can tell exactly which state it has rendered.

Records and snapshots are pydantic dataclasses: frozen, positional like any dataclass
inside the runtime, and the same types on the wire (the API's response models, parsed
back by its client), so nothing reads them as untyped dicts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import field, replace
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, computed_field
from pydantic.dataclasses import dataclass


class InstanceState(StrEnum):
    PENDING = "pending"
    """Waiting for its dependencies."""
    STARTING = "starting"
    """Process running, readiness not yet passed."""
    RUNNING = "running"
    """Process running and (if it has a readiness check) ready at least once."""
    DRAINING = "draining"
    """Taken out of traffic; about to receive SIGTERM."""
    STOPPING = "stopping"
    """SIGTERM sent, waiting for exit."""
    BACKOFF = "backoff"
    """Crashed; waiting before the next restart."""
    CRASHLOOP = "crashloop"
    """Crashed repeatedly without staying up; restarts continue at the maximum backoff."""
    EXITED = "exited"
    """Ended and not restarted (restart policy never/on-failure, or stopped)."""
    FAILED = "failed"
    """Could not be started at all (missing program, bad working directory)."""


@dataclass(frozen=True)
class InstanceRecord:
    service: str
    instance: str
    host: str
    port: int
    state: InstanceState
    ready: bool = False
    pid: int | None = None
    container: str | None = None
    """The container the instance runs in, under a container runtime."""
    restarts: int = 0
    started_at: float | None = None
    """Unix time the current process started."""
    exit_code: int | None = None
    message: str | None = None
    """Why the instance is in its state (last exit, failing check), for people."""
    component: bool = False
    """A Corral system component (gateway, broker), not a user service."""
    labels: dict[str, str] = field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented spelling
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def serving(self) -> bool:
        """Should receive traffic: ready and not on its way out."""
        return self.ready and self.state is InstanceState.RUNNING

    @computed_field  # type: ignore[prop-decorator]
    @property
    def uptime(self) -> float | None:
        """Seconds the current process has run (None when none runs), as of now."""
        if self.started_at is None or self.state not in _ALIVE:
            return None
        return time.time() - self.started_at

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _RECORD.dump_python(self, mode="json")
        return data


_ALIVE = frozenset(
    {InstanceState.STARTING, InstanceState.RUNNING, InstanceState.DRAINING, InstanceState.STOPPING}
)


@dataclass(frozen=True)
class Snapshot:
    version: int
    instances: tuple[InstanceRecord, ...]
    """Sorted by (service, instance id ordinal) so renders are stable."""

    def of(self, service: str) -> tuple[InstanceRecord, ...]:
        return tuple(r for r in self.instances if r.service == service)

    def serving(self, service: str) -> tuple[InstanceRecord, ...]:
        return tuple(r for r in self.instances if r.service == service and r.serving)

    def get(self, instance: str) -> InstanceRecord | None:
        return next((r for r in self.instances if r.instance == instance), None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _SNAPSHOT.dump_python(self, mode="json")
        return data


_RECORD = TypeAdapter(InstanceRecord)
_SNAPSHOT = TypeAdapter(Snapshot)


def _sort_key(record: InstanceRecord) -> tuple[str, int, str]:
    ordinal = record.instance.rsplit("-", 1)[-1]
    return (record.service, int(ordinal) if ordinal.isdigit() else 0, record.instance)


class Registry:
    """In-process registry with an async watch. Single event loop; not thread-safe."""

    def __init__(self) -> None:
        self._records: dict[str, InstanceRecord] = {}
        self._snapshot = Snapshot(0, ())
        self._changed = asyncio.Condition()

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def put(self, record: InstanceRecord) -> Snapshot:
        """Insert or replace one instance's record (no-op when nothing changed)."""
        if self._records.get(record.instance) == record:
            return self._snapshot
        self._records[record.instance] = record
        return self._publish()

    def update(self, instance: str, **changes: Any) -> Snapshot:
        current = self._records.get(instance)
        if current is None:
            raise KeyError(instance)
        return self.put(replace(current, **changes))

    def remove(self, instance: str) -> Snapshot:
        if self._records.pop(instance, None) is None:
            return self._snapshot
        return self._publish()

    def remove_many(self, instances: Iterable[str]) -> Snapshot:
        removed = [i for i in instances if self._records.pop(i, None) is not None]
        return self._publish() if removed else self._snapshot

    def _publish(self) -> Snapshot:
        records = tuple(sorted(self._records.values(), key=_sort_key))
        self._snapshot = Snapshot(self._snapshot.version + 1, records)
        # Wake watchers without awaiting: writers are plain synchronous calls.
        asyncio.get_running_loop().create_task(self._notify())
        return self._snapshot

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_version(self, version: int) -> Snapshot:
        """Return the first snapshot with at least ``version``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._snapshot.version >= version)
            return self._snapshot

    async def watch(self) -> AsyncIterator[Snapshot]:
        """The current snapshot, then every newer one. Slow watchers skip versions
        (they always get the latest), which is what renderers want."""
        seen = -1
        while True:
            snapshot = self._snapshot
            if snapshot.version > seen:
                seen = snapshot.version
                yield snapshot
            else:
                await self.wait_for_version(seen + 1)
