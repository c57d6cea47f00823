"""Background rounds a service runs while it is up: ``@svc.every(30)``.

A round runs ``interval`` after the previous one ended (a fixed delay, so a slow round
never overlaps the next), first ``interval`` after start. A round that raises is logged
as a warning with its traceback and the next one runs as planned: a database or broker
that is away for a while must not end the loop. At stop the wait is cut short; a round
in progress is given ``stop_timeout`` seconds to finish, then cancelled.

Hand-written rather than APScheduler or aiocron: one loop per task with a delay read each
round (so ``interval`` may follow live configuration) is all services need, and it must
run inside the service's lifecycle, which those schedulers would duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from structlog.typing import FilteringBoundLogger

__all__ = ["Interval", "Periodic"]

Interval = float | Callable[[], float]
"""Seconds between rounds, or a function read before each wait (live settings)."""

_FALLBACK = 1.0
"""Seconds waited when an interval function answers something unusable."""


class Periodic:
    """A :class:`~corral.sdk.Lifecycle` running ``work`` every ``interval`` seconds."""

    def __init__(
        self,
        work: Callable[[], Awaitable[None]],
        *,
        interval: Interval,
        name: str,
        log: FilteringBoundLogger,
        stop_timeout: float = 5.0,
    ) -> None:
        if not callable(interval) and not interval > 0:
            raise ValueError(f"periodic task {name!r}: interval must be > 0, got {interval!r}")
        self.name = name
        self._work = work
        self._interval = interval
        self._log = log
        self._stop_timeout = stop_timeout
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Periodic {self.name!r}>"

    async def start(self) -> None:
        self._stopping = asyncio.Event()  # a new one per start: bound to this loop
        self._task = asyncio.create_task(self._loop(), name=f"periodic:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self._stop_timeout)
        except TimeoutError:
            self._log.warning(
                "periodic task cancelled at stop", task=self.name, waited_s=self._stop_timeout
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _next_wait(self) -> float:
        if not callable(self._interval):
            return self._interval
        try:
            seconds = float(self._interval())
        except Exception as exc:
            self._log.warning("periodic task interval failed", task=self.name, exc_info=exc)
            return _FALLBACK
        if not seconds > 0:  # also NaN
            self._log.warning(
                "periodic task interval must be > 0", task=self.name, got=seconds, using=_FALLBACK
            )
            return _FALLBACK
        return seconds

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait()):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self._work()
            except Exception as exc:
                self._log.warning("periodic task failed", task=self.name, exc_info=exc)
