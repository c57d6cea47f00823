"""The shared events suite against real nats-servers: the embedded 2.15 one started for
the tests and the machine's external one at 127.0.0.1:4222."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from corral.sdk.events import NatsTransport, Transport
from events.helpers import delete_streams
from events.suite import EventsSuite


class TestNatsBus(EventsSuite):
    @pytest.fixture(autouse=True)
    async def _server(self, nats_url: str, system: str) -> AsyncIterator[None]:
        self.url = nats_url
        self.name = system
        yield
        await delete_streams(nats_url, system)

    def transport(self) -> Transport:
        return NatsTransport(self.url)

    def system(self) -> str:
        return self.name
