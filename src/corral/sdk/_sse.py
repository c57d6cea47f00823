"""Following a control-plane stream of server-sent events, as a service does for the
registry (discovery) and for its own configuration.

Hand-written: the few lines of the format we read (``event:``, ``data:``, comments,
blank-line ends) are less than a dependency, and aiohttp gives us the lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from corral.sdk._logging import get_logger


async def stream_events(
    session: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, str]]:
    """GET ``url`` as a stream and yield its events until the server ends it. Reads fail
    after a minute of silence: the server pings every 15 s, so that is a dead link."""
    async with session.get(
        url,
        params=params,
        headers={"accept": "text/event-stream"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
    ) as response:
        response.raise_for_status()
        async for event in read_events(response):
            yield event


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` for each complete event of a ``text/event-stream`` answer."""
    event = ""
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


async def follow_forever(
    follow: Callable[[], Awaitable[None]],
    *,
    what: str,
    url: str,
    initial: float,
    maximum: float,
) -> None:
    """Run ``follow`` (one connection of a stream) again whenever it ends or fails, after
    a jittered backoff that grows with consecutive failures; until cancelled."""
    log = get_logger()
    failures = 0
    while True:
        try:
            await follow()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            log.warning(f"{what} lost", url=url, error=str(exc), failures=failures)
        delay = random.uniform(0, min(maximum, initial * 2 ** min(failures, 16)))  # noqa: S311
        await asyncio.sleep(delay)


async def stop_following(
    task: asyncio.Task[None] | None, session: aiohttp.ClientSession | None
) -> None:
    """Cancel a stream's follower task and close its session (either may be None)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if session is not None:
        await session.close()
