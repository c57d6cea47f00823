"""Readiness while the broker connection is lost: still ready during the grace (the
client reconnects, the outbox holds what is published), not ready after it, ready again
once connected."""

from __future__ import annotations

import time

import pytest

from corral.sdk.events import Events, MemoryBroker, Transport


class Flaky:
    """A transport whose connection can be cut (everything else is the memory bus's)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.up = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def connected(self) -> bool:
        return self.up and await self.inner.connected()


async def test_a_lost_connection_keeps_the_service_ready_for_the_grace_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lost: ready (the bus restarts); still lost after the grace: not ready; back:
    ready, and a later loss gets the whole grace again."""
    flaky = Flaky(MemoryBroker().transport())
    events = Events("rides", transport=flaky, ensure=False)  # type: ignore[arg-type]
    await events.start()
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    try:
        assert await events.connected()
        flaky.up = False
        assert await events.connected()
        now[0] += events.reconnect_grace - 1
        assert await events.connected()
        now[0] += 2
        assert not await events.connected()
        flaky.up = True
        assert await events.connected()
        flaky.up = False
        now[0] += 100
        assert await events.connected()
    finally:
        monkeypatch.undo()  # the event loop's clock too: stop waits on real time
        await events.stop()
    assert not await events.connected()
