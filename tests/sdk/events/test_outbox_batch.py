"""The outbox relay's atomic batches against real nats-servers and real processes: a
relay killed mid-drain (at random points, and exactly between a batch's acknowledgement
and marking its rows sent), on SQLite and on PostgreSQL, loses no event, stores none
twice and keeps the outbox's order; a stream that does not
allow atomic batches still gets every event, one by one."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.sdk.events import Events, NatsTransport, TopicConfig, Topology
from corral.sdk.events.wire import stream_config, stream_name
from events.helpers import NatsServer, delete_streams, stored, stored_messages
from events.test_crash import APP, ROOT, run_app

pytestmark = pytest.mark.timeout(120)
TOPIC = "ride.requested"


@pytest.fixture
async def cleanup(nats_url: str, system: str) -> AsyncIterator[None]:
    yield
    await delete_streams(nats_url, system)


async def unsent(db: str) -> int:
    engine = create_async_engine(db)
    async with engine.connect() as conn:
        count = await conn.scalar(text("select count(*) from corral_outbox where sent_at is null"))
    await engine.dispose()
    return int(count or 0)


async def assert_exactly_once_in_order(nats_url: str, system: str, db: str, total: int) -> None:
    """The stream holds each of the ``total`` events the app committed (``{"n": 0}``,
    ``{"n": 1}``, ...) once, in commit order, and the outbox has nothing left to send."""
    stored = await stored_messages(nats_url, system, TOPIC)
    ids = [msg_id for msg_id, _ in stored]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    numbers = [json.loads(body)["data"]["n"] for _, body in stored]
    assert sorted(numbers) == list(range(total)), "an event was lost or stored twice"
    assert numbers == list(range(total)), "stored out of the outbox's order"
    assert await unsent(db) == 0


async def test_killed_between_batch_ack_and_marking(
    nats_url: str, system: str, outbox_db: str, cleanup: None
) -> None:
    """The broker stored the first batch, the relay died before marking it: the next
    relay's batch of those rows is refused as duplicates, and goes one by one (each
    dropped by de-duplication): every event stored exactly once, on SQLite and on
    PostgreSQL (where the killed relay's row locks go with its connection)."""
    db = outbox_db
    first = run_app("bulk", nats_url, system, db, "1200", "--batch", "400", crash="after-publish")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert await unsent(db) == 1200, "nothing was marked sent"
    assert await stored(nats_url, system, TOPIC) == 400, "one batch reached the broker"
    second = run_app("relay", nats_url, system, db)
    assert second.returncode == 0, second.stderr
    assert "drained" in second.stdout
    assert await stored(nats_url, system, TOPIC) == 1200
    await assert_exactly_once_in_order(nats_url, system, db, 1200)


async def stored_so_far(nats_url: str, system: str) -> int:
    """Events stored; 0 while the producer has not created the stream yet."""
    try:
        return await stored(nats_url, system, TOPIC)
    except NotFoundError:
        return 0


async def relay_until_killed(
    nats_url: str, system: str, db: str, args: tuple[str, ...], kill_at: int
) -> int:
    """Run the producer app with ``args``; SIGKILL it once the stream holds at least
    ``kill_at`` events (polled, no fixed sleep). How many it held at the kill."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            while (at_kill := await stored_so_far(nats_url, system)) < kill_at:
                await asyncio.sleep(0.002)
        proc.kill()
        await proc.wait()
        return at_kill
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def killed_twice_then_drained(nats_url: str, system: str, db: str, retention: str) -> None:
    """A relay SIGKILLed twice at random points while it drains 4000 committed events
    (mid-batch, between a batch's ack and its marking, or mid-marking), then a third
    that runs to the end: every event is on the stream exactly once, in order."""
    total = 4000
    bulk = ("bulk", nats_url, system, db, str(total), "--batch", "100", "--retention", retention)
    first = await relay_until_killed(nats_url, system, db, bulk, random.randint(1, total // 3))
    relay = ("relay", nats_url, system, db, "--batch", "100", "--retention", retention)
    target = random.randint(first + 1, total * 2 // 3)
    second = await relay_until_killed(nats_url, system, db, relay, target)
    assert 0 < first < second < total, "killed while draining, twice"
    last = run_app("relay", nats_url, system, db, "--retention", retention)
    assert "drained" in last.stdout, last.stderr
    await assert_exactly_once_in_order(nats_url, system, db, total)


@pytest.mark.parametrize("retention", ["3600", "0"])
async def test_killed_at_random_points_mid_drain(
    embedded_nats: NatsServer, system: str, outbox_db: str, retention: str
) -> None:
    """Atomic batches: on SQLite and on PostgreSQL, whether sent rows are kept or deleted
    at once."""
    try:
        await killed_twice_then_drained(embedded_nats.url, system, outbox_db, retention)
    finally:
        await delete_streams(embedded_nats.url, system)


async def test_killed_at_random_points_on_a_server_without_atomic_batches(
    external_nats_url: str, system: str, tmp_db: str
) -> None:
    """The machine's own older nats-server refuses atomic batches, so the relay sends one
    by one: the same crash, once (the path does not depend on the database or on keeping
    rows, which the test above varies; each run costs ~10 s of the suite)."""
    try:
        await killed_twice_then_drained(external_nats_url, system, tmp_db, "3600")
    finally:
        await delete_streams(external_nats_url, system)


async def test_stream_without_atomic_batches_gets_every_event(
    embedded_nats: NatsServer, system: str, tmp_db: str
) -> None:
    """A stream provisioned before atomic batches (allow_atomic off): the relay's
    batches are refused, and the same rows go one by one. (The machine's own older
    nats-server runs the crash tests above through this path.)"""
    nats_url = embedded_nats.url
    topic = TopicConfig(TOPIC)
    nc = await nats.connect(nats_url)
    config = stream_config(system, topic)
    config.allow_atomic = False
    await nc.jetstream().add_stream(config)
    await nc.close()
    engine = create_async_engine(tmp_db)
    events = Events(
        "rides",
        transport=NatsTransport(nats_url),
        topology=Topology(system=system, topics={TOPIC: topic}),
        engine=engine,
        outbox_poll_interval=3600,
    )
    await events.start()
    try:
        await events.relay.stop()  # relayed by hand below
        async with AsyncSession(engine) as session, session.begin():
            for n in range(300):
                await events.publish(TOPIC, {"n": n}, session=session)
        assert await events.relay_once() == 300
        assert await stored(nats_url, system, TOPIC) == 300
    finally:
        await events.stop()
        await engine.dispose()
        await delete_streams(nats_url, system)


async def test_relay_publishes_batches_not_single_events(
    embedded_nats: NatsServer, system: str, tmp_db: str
) -> None:
    """Where the stream allows it, no event goes one by one (a transport whose single
    publish fails proves it), and each batch stores its events once."""
    nats_url = embedded_nats.url
    engine = create_async_engine(tmp_db)
    transport = NatsTransport(nats_url)
    events = Events(
        "rides",
        transport=transport,
        topology=Topology(system=system, topics={TOPIC: TopicConfig(TOPIC)}),
        engine=engine,
        outbox_poll_interval=3600,
    )
    await events.start()
    try:
        await events.relay.stop()
        async with AsyncSession(engine) as session, session.begin():
            for n in range(1200):
                await events.publish(TOPIC, {"n": n}, session=session)
        info = await transport.js.stream_info(stream_name(system, TOPIC))
        if not info.config.allow_atomic:
            pytest.skip("this nats-server predates atomic batches (2.12)")

        async def refuse_single(*_: object) -> js_api.PubAck:
            raise AssertionError("published one by one")

        transport.publish = refuse_single  # type: ignore[method-assign,assignment]
        relayed = 0
        while relayed < 1200:
            got = await events.relay_once()
            assert got > 0
            relayed += got
        assert await stored(nats_url, system, TOPIC) == 1200
    finally:
        await events.stop()
        await engine.dispose()
        await delete_streams(nats_url, system)
