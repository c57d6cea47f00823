"""The shared events suite against the in-memory bus."""

from __future__ import annotations

import pytest

from corral.sdk.events import MemoryBroker, Transport
from events.suite import EventsSuite


class TestMemoryBus(EventsSuite):
    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.broker = MemoryBroker()

    def transport(self) -> Transport:
        return self.broker.transport()

    def system(self) -> str:
        return "mem"
