"""Background rounds a service runs while it is up (matching's and rides' sweeps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from corral.sdk import Service


def every(
    svc: Service[Any], seconds: Callable[[], float], name: str
) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """Decorator: run the function every ``seconds()`` from startup (after the startup
    hooks registered before it) until shutdown. A failing round is logged as a warning
    and the next one tries again: a database or broker away must not end the loop."""

    def decorate(work: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        tasks: list[asyncio.Task[None]] = []

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds())
                try:
                    await work()
                except Exception as exc:
                    svc.log.warning(f"{name} failed", error=str(exc))

        @svc.on_startup
        async def _start() -> None:
            tasks.append(asyncio.create_task(loop(), name=name))

        @svc.on_shutdown
        async def _stop() -> None:
            while tasks:
                task = tasks.pop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return work

    return decorate
