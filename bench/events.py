"""Events benchmark, side by side in one run (ratios, not timed tests: docs/design-notes.md).

1. publish -> handler latency (p50/p99, one event in flight) and throughput (N events,
   async publishing, handler counts) through corral.sdk.events against raw nats-py doing
   the same work (JetStream publish with dedup id, durable push consumer with queue
   group, JSON decode, explicit ack);
2. outbox relay events/s on SQLite and PostgreSQL (rows committed first, then drained,
   a fresh database per run), with atomic batches (corral.sdk.events._batch_wire),
   with atomic batches deleting rows when acknowledged (``outbox_retention=0``), and
   with one acknowledgement per event (what the relay did before, and still does for a
   batch the broker refuses), in rotating order; with the CPU per event of the relay,
   the broker and the PostgreSQL server, and the events/s one core would carry at that
   cost. ``--outbox-only`` runs just this part (keeping the last rounds of 1.).

Both sides publish with a de-duplication id and await the broker's ack in the latency
phase (one event in flight), and keep every event in flight in the throughput phase
(the SDK with ``wait=False`` then ``flush()``). Rounds alternate which side goes first;
ratios are taken within a round (same machine state) and summarised by their median.
The outbox rate counts only events the stream actually stored (its message count).

The embedded nats-server runs with ``sync_interval: always`` (read back from its config
file and reported in the JSON). Run: uv run python bench/events.py [rounds]
[--outbox-only] [--outbox-rounds=3] [--no-save]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import nats
import psutil
from nats.js import api
from pydantic import BaseModel
from sqlalchemy import insert

# The tests' nats-server helper (tests/sdk/events/helpers.py) and what it imports
# (tests/testkit.py).
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "sdk"))

from _common import RESULTS, percentile, write_result
from events.helpers import NatsServer

from corral.sdk import Database
from corral.sdk.events import Events, NatsTransport, Outgoing, TopicConfig, Topology
from corral.sdk.events._envelope import encode_envelope, new_event_id
from corral.sdk.events._tables import metadata, outbox

LAT_N, THR_N, OUTBOX_N = 500, 5000, 20000
OUTBOX_BATCH = 1000
ROUNDS = int(next((a for a in sys.argv[1:] if a.isdigit()), 5))
OUTBOX_ONLY = "--outbox-only" in sys.argv
VARIANTS: dict[str, dict[str, Any]] = {
    "atomic_batches": {"batched": True},  # the default relay: rows marked sent, kept 1 h
    "atomic_batches_delete_on_send": {"batched": True, "retention": 0.0},
    "one_by_one": {"batched": False},  # one acknowledgement per event (the fallback)
}
OUTBOX_ROUNDS = int(
    next((a.split("=")[1] for a in sys.argv if a.startswith("--outbox-rounds=")), 3)
)
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Ping(BaseModel):
    n: int
    sent: float


def pct(values: list[float], q: float) -> float:
    """Percentile of latencies in seconds, in ms."""
    return percentile(values, q) * 1000


async def drop_streams(url: str, system: str) -> None:
    """Delete the streams a round created (their names start with its system name)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(system):
            await js.delete_stream(info.config.name)
    await nc.close()


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

    async def publish(n: int, *, one: bool) -> Any:
        future = await js.publish_async(
            f"{name}.x",
            json.dumps({"n": n, "sent": time.perf_counter()}).encode(),
            headers={"Nats-Msg-Id": uuid.uuid4().hex},
        )
        if one:
            await future
            return None
        return future

    pending: list[Any] = []

    async def flush() -> None:
        await asyncio.gather(*pending)

    result = await run_pattern(publish, latencies, state, done, flush=flush, pending=pending)
    await js.delete_stream(name)
    await nc.close()
    return result


async def run_pattern(
    publish: Any,
    latencies: list[float],
    state: dict[str, int],
    done: asyncio.Event,
    *,
    flush: Any,
    pending: list[Any] | None = None,
) -> dict[str, float]:
    # latency: one event in flight, its ack awaited
    for n in range(LAT_N):
        done.clear()
        state["target"] = state["count"] + 1
        await publish(n, one=True)
        await done.wait()
    lat = list(latencies)
    # throughput: all in flight (async publishing); done = every ack in and every event handled
    done.clear()
    state["target"] = state["count"] + THR_N
    start = time.perf_counter()
    for n in range(THR_N):
        future = await publish(n, one=False)
        if pending is not None:
            pending.append(future)
    await flush()
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

    async def publish(n: int, *, one: bool) -> Any:
        # latency: await the ack like raw does; throughput: wait=False, flush() below
        await events.publish("ping", Ping(n=n, sent=time.perf_counter()), wait=one)
        return None

    result = await run_pattern(publish, latencies, state, done, flush=events.flush)
    await events.stop()
    del loop_publish
    await drop_streams(url, system)
    return result


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ROW_HEADERS = json.dumps({"Corral-Type": "ping", "traceparent": TRACEPARENT})
"""The headers ``publish(..., session=s)`` stores with a row (a traced request's)."""


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU of ``processes`` (one that has exited counts nothing)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(process.cpu_times()[:2])
    return total


async def database_backends(db: str, pg: asyncpg.Connection | None) -> list[psutil.Process]:
    """The PostgreSQL server processes serving ``db``'s connections (its CPU per event
    is part of the relay's cost); none for SQLite (it runs inside the relay process)."""
    if pg is None or not db.startswith("postgresql"):
        return []
    name = db.rsplit("/", 1)[1]
    rows = await pg.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    return [psutil.Process(row["pid"]) for row in rows]


async def bench_outbox(
    url: str,
    db: str,
    *,
    batched: bool = True,
    retention: float = 3600.0,
    broker_pid: int | None = None,
    pg: asyncpg.Connection | None = None,
) -> dict[str, float]:
    """Outbox rows committed, then drained by ``relay_once``: stored events per second,
    and CPU microseconds per event of the relay (this process), the broker and the
    database server (the machine is shared: CPU per event is what its load distorts
    least; ``events_per_core_s`` is what one core would carry at that cost).
    ``batched=False``: the relay as it was before atomic batches (one acknowledgement
    per event), by refusing every batch, which is also the relay's fallback path.
    ``retention``: seconds a sent row is kept (the default, 3600: marked sent, deleted
    later; 0: deleted when acknowledged)."""
    system = "ob" + uuid.uuid4().hex[:6]
    # The engine a service gets (corral.sdk.Database): on SQLite WAL, synchronous=NORMAL
    # and BEGIN IMMEDIATE; on PostgreSQL pre-ping.
    database = Database()
    await database.start(db)
    engine = database.engine
    topo = Topology(system=system, topics={"ping": TopicConfig("ping")})
    transport = NatsTransport(url)
    if not batched:

        async def refuse(messages: list[Outgoing], *, ack_timeout: float) -> bool:
            return False

        transport.publish_atomic = refuse  # type: ignore[method-assign]
    events = Events(
        "bench",
        transport=transport,
        topology=topo,
        engine=engine,
        outbox_poll_interval=3600,
        outbox_batch=OUTBOX_BATCH,
        outbox_retention=retention,
    )
    await events.start()
    await events.relay.stop()  # measure the relay alone: stop the background task
    await events._ensure_topics(["ping"])
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    rows = []
    for n in range(OUTBOX_N):
        eid = new_event_id()
        rows.append(
            {
                "id": eid,
                "topic": "ping",
                "subject": f"{system}.ping",
                "headers": ROW_HEADERS,
                "body": encode_envelope(
                    event_id=eid, source="/b", type="ping", data={"n": n}, traceparent=TRACEPARENT
                ),
                "created_at": time.time() + n * 1e-6,
                "sent_at": None,
                "attempts": 0,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(insert(outbox), rows)
    nc0 = await nats.connect(url)
    js0 = nc0.jetstream()

    async def in_stream() -> int:
        return int((await js0.stream_info(f"{system}_ping")).state.messages)

    before = await in_stream()
    me = [psutil.Process()]
    broker = [psutil.Process(broker_pid)] if broker_pid else []
    await events.outbox_pending()  # the pool's connection exists: its server process too
    backends = await database_backends(db, pg)
    cpu0 = [cpu_seconds(p) for p in (me, broker, backends)]
    start = time.perf_counter()
    # Relay until a round finds nothing (the rows are all committed before the clock).
    while await events.relay_once():
        pass
    elapsed = time.perf_counter() - start
    cpu1 = [cpu_seconds(p) for p in (me, broker, backends)]
    # Count what the broker stored, not what relay_once reported (a duplicate ack or an
    # error would otherwise be counted as relayed).
    stored = await in_stream() - before
    await nc0.close()
    assert stored == OUTBOX_N, (stored, OUTBOX_N)
    assert await events.outbox_pending() == 0
    await events.stop()
    await database.stop()
    await drop_streams(url, system)
    relay, broker_us, database_us = (
        (b - a) / stored * 1e6 for a, b in zip(cpu0, cpu1, strict=True)
    )
    return {
        "events_per_s": stored / elapsed,
        "relay_cpu_us_per_event": relay,
        "broker_cpu_us_per_event": broker_us,
        "database_cpu_us_per_event": database_us,
        "events_per_core_s": 1e6 / (relay + broker_us + database_us),
        "loadavg_1m": os.getloadavg()[0],
    }


def sync_mode(server: NatsServer) -> str:
    text = (server.store / "nats.conf").read_text()
    found = [line.strip() for line in text.splitlines() if "sync_interval" in line]
    return found[0] if found else "sync_interval: default (2 min)"


async def main() -> None:
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        mode = sync_mode(server)
        try:
            url = server.url
            for index in range(0 if OUTBOX_ONLY else ROUNDS):
                order = [("raw", bench_raw), ("sdk", bench_sdk)]
                if index % 2:
                    order.reverse()
                got = {name: await fn(url) for name, fn in order}
                raw, sdk = got["raw"], got["sdk"]
                rounds.append(
                    {
                        "first": order[0][0],
                        "raw_nats_py": raw,
                        "sdk": sdk,
                        "p99_sdk_over_raw": sdk["p99_ms"] / raw["p99_ms"],
                        "throughput_sdk_over_raw": sdk["throughput_per_s"]
                        / raw["throughput_per_s"],
                    }
                )
                print(json.dumps(rounds[-1]), flush=True)
            outbox_rates: dict[str, dict[str, list[dict[str, float]]]] = {}
            pid = server.proc.pid if server.proc else None

            async def side_by_side(
                name: str,
                make_db: Callable[[], Awaitable[str]],
                drop_db: Callable[[str], Awaitable[None]],
                pg: asyncpg.Connection | None = None,
            ) -> None:
                """Alternating runs, each on a fresh database (no earlier run's rows)."""
                rates: dict[str, list[dict[str, float]]] = {key: [] for key in VARIANTS}
                for n in range(OUTBOX_ROUNDS):
                    order = (
                        list(VARIANTS)[n % len(VARIANTS) :] + list(VARIANTS)[: n % len(VARIANTS)]
                    )
                    for key in order:
                        db = await make_db()
                        try:
                            rate = await bench_outbox(
                                url, db, **VARIANTS[key], broker_pid=pid, pg=pg
                            )
                        finally:
                            await drop_db(db)
                        rates[key].append({k: round(v, 1) for k, v in rate.items()})
                        print(name, key, rates[key][-1], flush=True)
                outbox_rates[name] = rates

            async def sqlite_db() -> str:
                return f"sqlite+aiosqlite:///{tmp}/ob{uuid.uuid4().hex[:8]}.sqlite3"

            async def sqlite_drop(db: str) -> None:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(db.split(":///", 1)[1] + suffix).unlink(missing_ok=True)

            await side_by_side("sqlite", sqlite_db, sqlite_drop)
            admin = await asyncpg.connect(PG)

            async def pg_db() -> str:
                name = "bench_" + uuid.uuid4().hex[:8]
                await admin.execute(f'CREATE DATABASE "{name}"')
                return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"

            async def pg_drop(db: str) -> None:
                await admin.execute(f'DROP DATABASE "{db.rsplit("/", 1)[1]}" WITH (FORCE)')

            try:
                await side_by_side("postgresql", pg_db, pg_drop, admin)
            finally:
                await admin.close()
        finally:
            server.kill()

    def med(key: str, side: str | None = None) -> float:
        values = [r[side][key] if side else r[key] for r in rounds]
        return statistics.median(values)

    outbox_summary: dict[str, Any] = {
        "events_per_round": OUTBOX_N,
        "relay_batch_rows": OUTBOX_BATCH,
        "goal_events_per_s": {"sqlite": 5000, "postgresql": 10000},
        "cpu_note": (
            "CPU per event: relay = the relaying process (SQLite runs inside it), broker ="
            " nats-server, database = the PostgreSQL server processes of the bench's own"
            " connections (its WAL writer and checkpointer are not counted);"
            " events_per_core_s = 1e6 / their sum"
        ),
        "machine_loadavg": [round(x, 2) for x in os.getloadavg()],
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    for name, rates in outbox_rates.items():

        def median_of(side: str, key: str, rates: Any = rates) -> float:
            return float(statistics.median(r[key] for r in rates[side]))

        batched, single = (median_of(k, "events_per_s") for k in ("atomic_batches", "one_by_one"))
        outbox_summary[name] = {
            **rates,
            "median_events_per_s": {k: median_of(k, "events_per_s") for k in VARIANTS},
            "ratio_batches_over_one_by_one": round(batched / single, 2),
            "ratio_delete_on_send_over_batches": round(
                median_of("atomic_batches_delete_on_send", "events_per_s") / batched, 2
            ),
            **{
                f"median_{measure}": {k: median_of(k, measure) for k in VARIANTS}
                for measure in (
                    "relay_cpu_us_per_event",
                    "broker_cpu_us_per_event",
                    "database_cpu_us_per_event",
                    "events_per_core_s",
                )
            },
        }
        goal = outbox_summary["goal_events_per_s"][name]
        if batched < goal:
            print(f"GOAL MISSED: outbox relay on {name}: {batched:.0f}/s < {goal}/s")
    previous = RESULTS / "events.json"
    if OUTBOX_ONLY and previous.exists():
        results = json.loads(previous.read_text())  # keep the last raw-vs-SDK rounds
    else:
        results = {
            "server": f"embedded nats-server 2.15, {mode} (fsync before ack)",
            "machine": "2 shared cores (other jobs running); compare ratios within a round",
            "rounds": len(rounds),
            "latency_events": LAT_N,
            "throughput_events": THR_N,
            "median": {
                "raw_nats_py": {k: med(k, "raw_nats_py") for k in rounds[0]["raw_nats_py"]},
                "sdk": {k: med(k, "sdk") for k in rounds[0]["sdk"]},
                "p99_sdk_over_raw": med("p99_sdk_over_raw"),
                "throughput_sdk_over_raw": med("throughput_sdk_over_raw"),
            },
            "per_round": rounds,
        }
    results.pop("outbox_relay_stored_events_per_s", None)
    results["outbox_relay"] = outbox_summary
    if "--no-save" not in sys.argv:
        write_result("events.json", results)
    print(json.dumps(results.get("median"), indent=2))
    print(json.dumps(outbox_summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
