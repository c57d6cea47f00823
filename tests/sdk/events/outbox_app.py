"""A producer process for the crash tests: ``publish`` writes one event through the
outbox and commits (CORRAL_EVENTS_TEST_CRASH may kill it right there); ``relay`` starts
the events component (its relay drains the outbox) and exits once nothing is pending;
``stream`` keeps publishing N events through the outbox, one transaction each."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.sdk.events import Events, NatsTransport, TopicConfig, Topology


async def main(mode: str, url: str, system: str, db: str, count: int) -> None:
    engine = create_async_engine(db)
    topology = Topology(system=system, topics={"ride.requested": TopicConfig("ride.requested")})
    events = Events(
        "rides",
        transport=NatsTransport(url),
        topology=topology,
        engine=engine,
        outbox_poll_interval=0.2,
        publish_timeout=2.0,
    )
    await events.start()
    if mode == "publish":
        async with AsyncSession(engine) as session, session.begin():
            event_id = await events.publish("ride.requested", {"ride_id": "r1"}, session=session)
        print(event_id, flush=True)
    elif mode == "stream":
        for n in range(count):
            async with AsyncSession(engine) as session, session.begin():
                await events.publish("ride.requested", {"n": n}, session=session)
            print(n, flush=True)
    deadline = asyncio.get_running_loop().time() + 60
    while (pending := await events.outbox_pending()) and (
        asyncio.get_running_loop().time() < deadline
    ):
        await asyncio.sleep(0.05)
    # Say "drained" only when it is true: the tests assert on it.
    print("drained" if not pending else f"NOT drained: {pending} pending", flush=True)
    await events.stop()
    await engine.dispose()


if __name__ == "__main__":
    mode, url, system, db = sys.argv[1:5]
    asyncio.run(main(mode, url, system, db, int(sys.argv[5]) if len(sys.argv) > 5 else 0))
