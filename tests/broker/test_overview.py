"""The dashboard's view of the bus (``bus_overview``) against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from events.helpers import delete_streams

from broker.helpers import plan_of
from corral.broker import bus_overview, provision
from corral.sdk.events import DeadLetter, NatsTransport
from corral.sdk.events._topology import dlq_stream


@pytest.fixture
async def provisioned(nats_url: str, system: str) -> AsyncIterator[str]:
    """A fresh system's streams, as `corral up` leaves them: no event, no dead letter."""
    nc = await nats.connect(nats_url)
    try:
        await provision(nc.jetstream(), plan_of(system))
    finally:
        await nc.close()
    yield nats_url
    await delete_streams(nats_url, system)


async def test_overview_of_a_fresh_system_with_an_empty_dead_letter_stream(
    provisioned: str, system: str
) -> None:
    """A fresh system (its dead-letter stream empty) is an overview with no dead letter,
    not the 'bad request' NATS answers when asked for message 0 of an empty stream."""
    overview = await bus_overview(provisioned, plan_of(system))
    assert overview["dead_letters"] == 0
    assert overview["recent_dead_letters"] == []
    assert [t["topic"] for t in overview["topics"]] == ["ride.requested", "ride.updated"]
    assert all(t["provisioned"] and t["messages"] == 0 for t in overview["topics"])


async def test_overview_after_every_dead_letter_was_replayed(provisioned: str, system: str) -> None:
    """Dead letters deleted one by one (replayed) leave an empty stream whose first
    sequence is past its last: still no dead letter and no error."""
    nc = await nats.connect(provisioned)
    try:
        js = nc.jetstream()
        ack = await js.publish(f"{system}._dlq.matching.ride.requested", b"{}")
        await js.delete_msg(dlq_stream(system), ack.seq)
    finally:
        await nc.close()
    overview = await bus_overview(provisioned, plan_of(system))
    assert (overview["dead_letters"], overview["recent_dead_letters"]) == (0, [])


async def test_overview_lists_the_newest_dead_letters_first(provisioned: str, system: str) -> None:
    """Recent dead letters come newest first, with the total count."""
    transport = NatsTransport(provisioned)
    await transport.start()
    try:
        for n in range(3):
            letter = DeadLetter(0, "matching", "ride.requested", f"e{n}", "boom", 4, 0.0)
            await transport.dlq_add(system, letter, msg_id=f"dlq-{n}")
    finally:
        await transport.close()
    overview = await bus_overview(provisioned, plan_of(system), letters=2)
    assert overview["dead_letters"] == 3
    assert [d["event_id"] for d in overview["recent_dead_letters"]] == ["e2", "e1"]
