"""Events benchmark, side by side in one run (see design.md: ratios, not timed tests).

1. publish -> handler latency (p50/p99, one event in flight) and throughput (N events,
   async publishing, handler counts) through corral.sdk.events against raw nats-py doing
   the same work (JetStream publish with dedup id, durable push consumer with queue
   group, JSON decode, explicit ack);
2. outbox relay events/s on SQLite and PostgreSQL (rows committed first, then drained).

The embedded nats-server runs with ``sync_interval: always`` (reported in the JSON).
Run: uv run python bench/events.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.js import api
from pydantic import BaseModel
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "sdk"))
import contextlib

from events.helpers import NatsServer

from corral.sdk.events import Events, NatsTransport, TopicConfig, Topology
from corral.sdk.events._tables import metadata, outbox

LAT_N, THR_N, OUTBOX_N = 1000, 10000, 5000
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Ping(BaseModel):
    n: int
    sent: float


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def bench_raw(url: str) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = "raw" + uuid.uuid4().hex[:6]
    await js.add_stream(name=name, subjects=[f"{name}.x"])
    await js.add_consumer(
        name,
        api.ConsumerConfig(
            durable_name="c",
            deliver_subject=f"_d.{name}",
            deliver_group="c",
            ack_policy=api.AckPolicy.EXPLICIT,
            max_ack_pending=20000,
        ),
    )
    latencies: list[float] = []
    done = asyncio.Event()
    state = {"count": 0, "target": 0}

    async def on_msg(msg: Any) -> None:
        data = json.loads(msg.data)
        latencies.append(time.perf_counter() - data["sent"])
        await msg.ack()
        state["count"] += 1
        if state["count"] >= state["target"]:
            done.set()

    await nc.subscribe(f"_d.{name}", queue="c", cb=on_msg)
    result = await run_pattern(
        lambda n: js.publish_async(
            f"{name}.x",
            json.dumps({"n": n, "sent": time.perf_counter()}).encode(),
            headers={"Nats-Msg-Id": uuid.uuid4().hex},
        ),
        latencies,
        state,
        done,
    )
    await js.delete_stream(name)
    await nc.close()
    return result


async def run_pattern(
    publish: Any, latencies: list[float], state: dict[str, int], done: asyncio.Event
) -> dict[str, float]:
    # latency: one event in flight
    for n in range(LAT_N):
        done.clear()
        state["target"] = state["count"] + 1
        await (await publish(n))
        await done.wait()
    lat = list(latencies)
    # throughput: all in flight through async publishing
    done.clear()
    state["target"] = state["count"] + THR_N
    start = time.perf_counter()
    futures = [await publish(n) for n in range(THR_N)]
    await asyncio.gather(*futures)
    await done.wait()
    elapsed = time.perf_counter() - start
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "throughput_per_s": THR_N / elapsed}


async def bench_sdk(url: str) -> dict[str, float]:
    system = "sdk" + uuid.uuid4().hex[:6]
    topo = Topology(system=system, topics={"ping": TopicConfig("ping", max_ack_pending=20000)})
    events = Events("bench", transport=NatsTransport(url), topology=topo, validate=False)
    latencies: list[float] = []
    done = asyncio.Event()
    state = {"count": 0, "target": 0}

    @events.subscribe("ping")
    async def on_ping(event: Ping) -> None:
        latencies.append(time.perf_counter() - event.sent)
        state["count"] += 1
        if state["count"] >= state["target"]:
            done.set()

    await events.start()
    loop_publish = events.transport

    async def publish(n: int) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await events.publish("ping", Ping(n=n, sent=time.perf_counter()), wait=False)
        future.set_result(None)
        return future

    # wait=False publishes are acknowledged through events.flush(); use it between phases
    result = await run_pattern(publish, latencies, state, done)
    await events.flush()
    await events.stop()
    del loop_publish
    nc = await nats.connect(url)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(system):
            await js.delete_stream(info.config.name)
    await nc.close()
    return result


async def bench_outbox(url: str, db: str) -> float:
    system = "ob" + uuid.uuid4().hex[:6]
    engine = create_async_engine(db)
    topo = Topology(system=system, topics={"ping": TopicConfig("ping")})
    events = Events(
        "bench",
        transport=NatsTransport(url),
        topology=topo,
        engine=engine,
        outbox_poll_interval=3600,
    )
    await events.start()
    if events._relay:  # measure the relay alone: stop the background task
        events._relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await events._relay
    await events._ensure_topics(["ping"])
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    rows = []
    for n in range(OUTBOX_N):
        eid = uuid.uuid4().hex
        rows.append(
            {
                "id": eid,
                "topic": "ping",
                "subject": f"{system}.ping",
                "headers": "{}",
                "body": json.dumps(
                    {"id": eid, "source": "/b", "type": "ping", "data": {"n": n}}
                ).encode(),
                "created_at": time.time() + n * 1e-6,
                "sent_at": None,
                "attempts": 0,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(insert(outbox), rows)
    start = time.perf_counter()
    while await events.outbox_pending():
        await events.relay_once()
    elapsed = time.perf_counter() - start
    nc0 = await nats.connect(url)
    stored = (await nc0.jetstream().stream_info(f"{system}_ping")).state.messages
    await nc0.close()
    assert stored == OUTBOX_N, (stored, OUTBOX_N)
    events._relay = None
    await events.stop()
    await engine.dispose()
    nc = await nats.connect(url)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(system):
            await js.delete_stream(info.config.name)
    await nc.close()
    return OUTBOX_N / elapsed


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            url = server.url
            raw = await bench_raw(url)
            sdk = await bench_sdk(url)
            sqlite = await bench_outbox(url, f"sqlite+aiosqlite:///{tmp}/ob.sqlite3")
            pg_name = "bench_" + uuid.uuid4().hex[:8]
            admin = await asyncpg.connect(PG)
            await admin.execute(f'CREATE DATABASE "{pg_name}"')
            try:
                pg = await bench_outbox(
                    url, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
                )
            finally:
                await admin.execute(f'DROP DATABASE "{pg_name}" WITH (FORCE)')
                await admin.close()
        finally:
            server.kill()
    results = {
        "server": "embedded nats-server 2.15, sync_interval: always (fsync before ack)",
        "latency_events": LAT_N,
        "throughput_events": THR_N,
        "raw_nats_py": raw,
        "sdk": sdk,
        "ratios": {
            "p99_sdk_over_raw": sdk["p99_ms"] / raw["p99_ms"],
            "throughput_sdk_over_raw": sdk["throughput_per_s"] / raw["throughput_per_s"],
        },
        "outbox_relay_events_per_s": {"sqlite": sqlite, "postgresql": pg},
    }
    out = Path(__file__).parent / "results" / "events.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    statistics.mean([1])
    asyncio.run(main())
