"""The outbox relay's atomic batches against real nats-servers and real processes: a
relay killed mid-drain (at a random point, and exactly between a batch's acknowledgement
and marking its rows sent) loses no event and stores none twice; a stream that does not
allow atomic batches still gets every event, one by one."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import api as js_api
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.sdk.events import Events, NatsTransport, TopicConfig, Topology
from corral.sdk.events.wire import stream_config, stream_name
from events.helpers import NatsServer, delete_streams, stored
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


async def test_killed_between_batch_ack_and_marking(
    nats_url: str, system: str, tmp_path: Path, cleanup: None
) -> None:
    """The broker stored the first batch, the relay died before marking it: the next
    relay's batch of those rows is refused as duplicates, and goes one by one (each
    dropped by de-duplication): every event stored exactly once."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'rides.sqlite3'}"
    first = run_app("bulk", nats_url, system, db, "1200", "--batch", "400", crash="after-publish")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert await unsent(db) == 1200, "nothing was marked sent"
    assert await stored(nats_url, system, TOPIC) == 400, "one batch reached the broker"
    second = run_app("relay", nats_url, system, db)
    assert second.returncode == 0, second.stderr
    assert "drained" in second.stdout
    assert await stored(nats_url, system, TOPIC) == 1200
    assert await unsent(db) == 0


async def test_killed_at_a_random_point_mid_drain(
    nats_url: str, system: str, tmp_path: Path, cleanup: None
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'rides.sqlite3'}"
    total = 4000
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        *("bulk", nats_url, system, db, str(total), "--batch", "100"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"committed"
        async with asyncio.timeout(60):
            while (at_kill := await stored(nats_url, system, TOPIC)) == 0:
                await asyncio.sleep(0.005)
        proc.kill()
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    after_kill = await stored(nats_url, system, TOPIC)
    assert 0 < at_kill <= after_kill < total, "killed while draining"
    second = run_app("relay", nats_url, system, db)
    assert "drained" in second.stdout, second.stderr
    assert await stored(nats_url, system, TOPIC) == total
    assert await unsent(db) == 0


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
