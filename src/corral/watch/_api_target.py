"""The running system as the watcher's :class:`Target`: its control API."""

from __future__ import annotations

import asyncio

from corral.api import ApiClient, ApiError, WatchClient
from corral.watch._watcher import ManifestOutcome, ReloadOutcome

__all__ = ["ApiTarget"]


class ApiTarget:
    def __init__(self, api: ApiClient) -> None:
        self._watch = WatchClient(api)

    async def reload(self, service: str) -> ReloadOutcome:
        # In a thread: under `corral up --watch` the API that answers runs on this loop.
        result = await asyncio.to_thread(self._watch.reload, service)
        return ReloadOutcome(
            service, result.outcome == "reloaded", result.reason, tuple(result.log_tail)
        )

    async def apply_manifest(self) -> ManifestOutcome:
        try:
            done = await asyncio.to_thread(self._watch.apply_manifest)
        except ApiError as exc:
            if exc.status != 422:
                raise
            return ManifestOutcome(error=exc.detail or exc.title)
        return ManifestOutcome(tuple(done.changed), tuple(done.failed), tuple(done.notes))
