"""The shared events suite against the in-memory bus."""

from __future__ import annotations

import logging

import pytest

from corral.sdk.events import Events, MemoryBroker, Transport
from events.suite import EventsSuite


class TestMemoryBus(EventsSuite):
    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.broker = MemoryBroker()

    def transport(self) -> Transport:
        return self.broker.transport()

    def system(self) -> str:
        return "mem"


async def test_stop_says_which_publishes_were_never_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wait=False publish the broker refused is not dropped silently at stop: stop
    logs it (and still stops)."""
    events = Events("rides", transport=MemoryBroker().transport(), ensure=False)
    await events.start()
    await events.publish("nowhere", {"n": 1}, wait=False)  # no stream stores it
    with caplog.at_level(logging.WARNING, logger="corral.events"):
        await events.stop()
    assert not events.started
    assert "wait=False publishes not acknowledged" in caplog.text
    assert "no stream stores subject" in caplog.text
