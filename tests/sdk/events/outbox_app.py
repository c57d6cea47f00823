"""A producer process for the crash tests: ``publish`` writes one event through the
outbox and commits (``--crash after-commit`` kills it right there, ``--crash
after-publish`` once the relay published it); ``relay`` starts the events component (its
relay drains the outbox) and exits once nothing is pending; ``stream`` keeps publishing
N events through the outbox, one transaction each; ``bulk`` commits N events in one
transaction, then relays them (``--batch``: rows per relay round; ``--retention``: seconds a
sent row is kept, 0 deletes it at once)."""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.sdk.events import Events, NatsTransport, TopicConfig, Topology
from corral.sdk.testing import EventCrash, inject_event_faults


async def main(
    mode: str,
    url: str,
    system: str,
    db: str,
    count: int,
    crash: EventCrash | None,
    batch: int = 500,
    retention: float = 3600.0,
) -> None:
    engine = create_async_engine(db)
    topology = Topology(system=system, topics={"ride.requested": TopicConfig("ride.requested")})
    events = Events(
        "rides",
        transport=NatsTransport(url),
        topology=topology,
        engine=engine,
        outbox_poll_interval=0.2,
        publish_timeout=2.0,
        outbox_batch=batch,
        outbox_retention=retention,
    )
    if crash:
        inject_event_faults(events, crash=crash)
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
    elif mode == "bulk":
        async with AsyncSession(engine) as session, session.begin():
            for n in range(count):
                await events.publish("ride.requested", {"n": n}, session=session)
        print("committed", flush=True)
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
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "relay", "stream", "bulk"])
    parser.add_argument("url")
    parser.add_argument("system")
    parser.add_argument("db")
    parser.add_argument("count", type=int, nargs="?", default=0)
    parser.add_argument("--crash", choices=["after-commit", "after-publish"])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--retention", type=float, default=3600.0)
    args = parser.parse_args()
    asyncio.run(
        main(
            args.mode,
            args.url,
            args.system,
            args.db,
            args.count,
            args.crash,
            args.batch,
            args.retention,
        )
    )
