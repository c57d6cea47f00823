"""Bulkhead: at most ``max_concurrent`` calls to a target in flight, ``max_queue`` more
waiting in order, and every call beyond that rejected at once (no await before the
rejection, so it costs microseconds)."""

from __future__ import annotations

import asyncio
from collections import deque

from corral.sdk.client._errors import BulkheadFullError
from corral.sdk.client._policy import BulkheadPolicy

__all__ = ["Bulkhead"]


class Bulkhead:
    def __init__(self, target: str, policy: BulkheadPolicy) -> None:
        self.target = target
        self.max_concurrent = policy.max_concurrent
        self.max_queue = policy.max_queue
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free slot if there is one, without awaiting (the common case)."""
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
            return True
        return False

    async def acquire(self, wait: float | None) -> None:
        """Take a slot, queue for one, or raise :class:`BulkheadFullError` immediately."""
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise BulkheadFullError(
                f"bulkhead to {self.target!r} is full "
                f"({self.active} in flight, {len(self._waiters)} queued)",
                target=self.target,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we gave up
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back (to the next waiter, if any)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; ``active`` stays
                return
        self.active -= 1
