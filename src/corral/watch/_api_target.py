"""The running system as the watcher's :class:`Target`: its control API."""

from __future__ import annotations

import asyncio

from corral.api import ApiClient, WatchClient
from corral.watch._watcher import ReloadOutcome

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
