"""One abstract suite for every transport (as FastStream's tests/brokers/base): the
in-memory bus and JetStream must behave the same way for handlers."""

from __future__ import annotations

import abc
import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.sdk import Database
from corral.sdk.events import (
    DeadLetter,
    Delivery,
    Envelope,
    Events,
    EventSchemaError,
    Outgoing,
    PayloadTooLargeError,
    TopicConfig,
    Topology,
    Transport,
    inbox,
    outbox,
)
from corral.sdk.testing import inject_event_faults
from events.helpers import eventually


class RideRequested(BaseModel):
    ride_id: str
    seats: int = 1


class Other(BaseModel):
    name: str


effects_md = MetaData()
effects = Table(
    "effects", effects_md, Column("n", Integer, primary_key=True), Column("ride_id", String(50))
)

Make = Callable[..., Awaitable[Events]]


def count_publishes(events: Events, refuse: Collection[str] = ()) -> dict[str, int]:
    """Count ``events``' publishes per message id; the broker "refuses" ids in ``refuse``.
    The relay's atomic batches are refused, as a broker that refuses one of their events
    does, so every event is published (and counted) one by one."""
    counts: dict[str, int] = {}
    transport = events.transport
    real = transport.publish

    async def publish(message: Outgoing) -> asyncio.Future[Any]:
        counts[message.msg_id] = counts.get(message.msg_id, 0) + 1
        if message.msg_id in refuse:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(RuntimeError("stream refused the message"))
            return future
        return await real(message)

    async def one_by_one(messages: list[Outgoing], *, ack_timeout: float) -> bool:
        return False  # every event through ``publish``, where it is counted

    transport.publish = publish  # type: ignore[method-assign]
    transport.publish_atomic = one_by_one  # type: ignore[method-assign]
    return counts


FAST = TopicConfig(name="ride.requested", backoff=(0.05, 0.05), max_deliveries=3, ack_wait=5.0)


class EventsSuite(abc.ABC):
    """Behaviour every transport shares."""

    @abc.abstractmethod
    def transport(self) -> Transport:
        """A new connection (another replica or service) to the same bus."""

    @abc.abstractmethod
    def system(self) -> str: ...

    @pytest.fixture
    async def make(self, spans: tuple[TracerProvider, InMemorySpanExporter]) -> AsyncIterator[Make]:
        started: list[Events] = []

        async def make(
            service: str,
            handlers: dict[str, Callable[..., Awaitable[Any]]] | None = None,
            *,
            topics: tuple[TopicConfig, ...] = (FAST,),
            engine: Any = None,
        ) -> Events:
            topology = Topology(system=self.system(), topics={t.name: t for t in topics})
            events = Events(
                service,
                transport=self.transport(),
                topology=topology,
                engine=engine,
                tracer_provider=spans[0],
                outbox_poll_interval=0.2,
            )
            for topic, fn in (handlers or {}).items():
                events.subscribe(topic)(fn)
            await events.start()
            started.append(events)
            return events

        yield make
        for events in reversed(started):
            await events.stop()

    async def test_typed_payload_and_envelope(self, make: Make) -> None:
        """A handler receives the payload as its model and the CloudEvents envelope."""
        got: list[tuple[RideRequested, Envelope]] = []

        async def on_ride(event: RideRequested, envelope: Envelope) -> None:
            got.append((event, envelope))

        events = await make("matching", {"ride.requested": on_ride})
        event_id = await events.publish("ride.requested", RideRequested(ride_id="r1", seats=2))
        await eventually(lambda: len(got) == 1)
        payload, envelope = got[0]
        assert payload == RideRequested(ride_id="r1", seats=2)
        assert (envelope.id, envelope.type, envelope.specversion) == (
            event_id,
            "ride.requested",
            "1.0",
        )
        assert envelope.source.startswith("/matching/")

    async def test_replicas_compete_services_fan_out(self, make: Make) -> None:
        """Each event reaches exactly one replica of a service, and every subscribing service."""
        seen: dict[str, list[str]] = {"m1": [], "m2": [], "t": []}

        def record(key: str) -> Callable[[RideRequested], Awaitable[None]]:
            async def handler(event: RideRequested) -> None:
                seen[key].append(event.ride_id)

            return handler

        producer = await make("matching", {"ride.requested": record("m1")})
        await make("matching", {"ride.requested": record("m2")})
        await make("tracking", {"ride.requested": record("t")})
        for n in range(40):
            await producer.publish("ride.requested", RideRequested(ride_id=str(n)), wait=False)
        await producer.flush()
        await eventually(lambda: len(seen["m1"]) + len(seen["m2"]) == 40 and len(seen["t"]) == 40)
        assert sorted(seen["m1"] + seen["m2"], key=int) == [str(n) for n in range(40)]
        assert seen["m1"], "both replicas should get a share"
        assert seen["m2"], "both replicas should get a share"

    async def test_redelivery_after_handler_error(self, make: Make) -> None:
        """A handler that raises gets the event again (after backoff) until it succeeds."""
        attempts: list[int] = []

        async def flaky(event: RideRequested) -> None:
            attempts.append(1)
            if len(attempts) < 3:
                raise RuntimeError("database hiccup")

        events = await make("matching", {"ride.requested": flaky})
        await events.publish("ride.requested", RideRequested(ride_id="r1"))
        await eventually(lambda: events.stats["processed"] == 1)
        assert len(attempts) == 3
        assert events.stats["failed"] == 2
        assert await events.dead_letters() == []

    async def test_dead_letter_after_max_deliveries_then_replay(self, make: Make) -> None:
        """After max_deliveries failures the event is dead-lettered with its history;
        replay sends it back to that service only."""
        broken = True
        handled: list[str] = []
        other: list[str] = []

        async def handler(event: RideRequested) -> None:
            if broken:
                raise ValueError(f"cannot match {event.ride_id}")
            handled.append(event.ride_id)

        async def tracking(event: RideRequested) -> None:
            other.append(event.ride_id)

        events = await make("matching", {"ride.requested": handler})
        await make("tracking", {"ride.requested": tracking})
        await events.publish("ride.requested", RideRequested(ride_id="r9"))
        await eventually(lambda: events.stats["dead_lettered"] == 1)
        await eventually(lambda: other == ["r9"], what="tracking handled the event")
        letters = await events.dead_letters()
        assert len(letters) == 1
        letter = letters[0]
        assert (letter.service, letter.topic, letter.deliveries) == (
            "matching",
            "ride.requested",
            3,
        )
        assert letter.error == "ValueError: cannot match r9"
        assert [h["attempt"] for h in letter.history] == [1, 2, 3]
        assert letter.event["data"] == {"ride_id": "r9", "seats": 1}

        broken = False
        assert await events.replay(letter.seq)
        await eventually(lambda: handled == ["r9"])
        assert await events.dead_letters() == []
        assert other == ["r9"], "the replay must not reach services that handled it"

    async def test_dead_letter_stored_once_when_term_is_lost(self, make: Make) -> None:
        """A dead-lettered delivery whose term is lost comes back once more; the dead
        letter stored again for it is de-duplicated: one dead letter per message."""
        quick = TopicConfig(name="ride.requested", ack_wait=0.5, max_deliveries=2, backoff=())
        terms: list[int] = []

        async def handler(event: RideRequested) -> None:
            raise ValueError(f"cannot match {event.ride_id}")

        events = await make("matching", {"ride.requested": handler}, topics=(quick,))
        dead_letter = events.consumer._dead_letter

        async def losing_first_term(delivery: Delivery, *args: Any) -> None:
            real_term = delivery.term

            async def term() -> None:
                terms.append(delivery.attempt)
                if len(terms) > 1:  # the first is lost, as if the process died after dlq_add
                    await real_term()

            delivery.term = term  # type: ignore[method-assign]
            await dead_letter(delivery, *args)

        events.consumer._dead_letter = losing_first_term  # type: ignore[method-assign]
        await events.publish("ride.requested", RideRequested(ride_id="r1"))
        await eventually(lambda: len(terms) == 2, what="the dead letter stored twice")
        assert terms == [2, 3], "the extra delivery stores the dead letter again"
        letters = await events.dead_letters()
        assert len(letters) == 1, "the second dead letter must be de-duplicated"
        assert letters[0].error == "ValueError: cannot match r1"

    async def test_dead_letter_not_stored_naks_the_event(self, make: Make) -> None:
        """When storing the dead letter fails, the event is nak'ed (not left unsettled nor
        dropped) and its extra delivery stores the dead letter, with the history."""
        quick = TopicConfig(name="ride.requested", ack_wait=5.0, max_deliveries=2, backoff=())

        async def handler(event: RideRequested) -> None:
            raise ValueError(f"cannot match {event.ride_id}")

        events = await make("matching", {"ride.requested": handler}, topics=(quick,))
        events.consumer.dead_letter_retry = 0.05
        transport = events.transport
        store = transport.dlq_add
        tries: list[int] = []

        async def failing_once(system: str, letter: DeadLetter, *, msg_id: str) -> None:
            tries.append(letter.deliveries)
            if len(tries) == 1:
                raise ConnectionError("broker away")
            await store(system, letter, msg_id=msg_id)

        transport.dlq_add = failing_once  # type: ignore[method-assign]
        await events.publish("ride.requested", RideRequested(ride_id="r1"))
        await eventually(lambda: events.stats["dead_lettered"] == 1)
        assert tries == [2, 3]
        assert events.stats["dead_letter_errors"] == 1
        (letter,) = await events.dead_letters()
        assert letter.error == (
            "attempts exhausted without a result; last error: ValueError: cannot match r1"
        )
        assert [h["attempt"] for h in letter.history] == [1, 2]

    async def test_failure_history_is_bounded(self, make: Make) -> None:
        """Failures whose retry succeeds on another replica are never cleared on the
        replica that failed them: it keeps only the most recent history_limit ones."""
        done: list[str] = []

        async def failing(event: RideRequested) -> None:
            raise RuntimeError("this replica cannot")

        async def working(event: RideRequested) -> None:
            done.append(event.ride_id)

        limit = 3
        # Enough deliveries that no event is dead-lettered by landing on the bad one only.
        many = TopicConfig(name="ride.requested", max_deliveries=20, backoff=(0.01,))
        bad = await make("matching", {"ride.requested": failing}, topics=(many,))
        bad.consumer.history_limit = limit
        await make("matching", {"ride.requested": working}, topics=(many,))
        for n in range(30):
            await bad.publish("ride.requested", RideRequested(ride_id=str(n)), wait=False)
        await bad.flush()
        await eventually(lambda: len(done) == 30, what="the other replica handled them all")
        assert bad.stats["failed"] > limit, "the failing replica should have seen several"
        assert bad.stats["dead_lettered"] == 0
        assert len(bad.consumer.history) <= limit

    async def test_inbox_skips_redelivered_event(self, make: Make, tmp_db: str) -> None:
        """With a session, the inbox makes a redelivered event (ack lost) apply once."""
        engine = create_async_engine(tmp_db)
        async with engine.begin() as conn:
            await conn.run_sync(effects_md.create_all)
        calls: list[str] = []

        async def apply(event: RideRequested, session: AsyncSession) -> None:
            calls.append(event.ride_id)
            await session.execute(insert(effects).values(ride_id=event.ride_id))

        quick = TopicConfig(name="ride.requested", ack_wait=0.5, max_deliveries=5, backoff=())
        events = await make("matching", {"ride.requested": apply}, topics=(quick,), engine=engine)
        inject_event_faults(events, lose_acks=1)  # the broker redelivers
        await events.publish("ride.requested", RideRequested(ride_id="r1"))
        await eventually(lambda: events.stats["duplicates"] == 1, timeout=15)
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
        assert count == 1
        assert calls == ["r1"], "the handler must not run again for a processed event"
        await engine.dispose()

    async def test_handler_integrity_error_is_retried_not_swallowed(
        self, make: Make, tmp_db: str
    ) -> None:
        """A handler whose own write violates a constraint is retried, then dead-lettered;
        it is not mistaken for a duplicate delivery and acknowledged."""
        engine = create_async_engine(tmp_db)
        async with engine.begin() as conn:
            await conn.run_sync(effects_md.create_all)
            await conn.execute(insert(effects).values(n=1, ride_id="taken"))
        calls: list[str] = []

        async def apply(event: RideRequested, session: AsyncSession) -> None:
            calls.append(event.ride_id)
            await session.execute(insert(effects).values(n=1, ride_id=event.ride_id))

        events = await make("matching", {"ride.requested": apply}, engine=engine)
        await events.publish("ride.requested", RideRequested(ride_id="r1"))
        await eventually(lambda: events.stats["dead_lettered"] == 1)
        assert calls == ["r1"] * 3
        assert events.stats["duplicates"] == 0
        (letter,) = await events.dead_letters()
        assert letter.error.startswith("IntegrityError")
        async with engine.connect() as conn:
            rows = (await conn.execute(select(inbox.c.event_id))).all()
        assert rows == [], "a failed handler must not leave an inbox row"
        await engine.dispose()

    async def test_inbox_conflict_from_concurrent_delivery_is_a_duplicate(
        self, make: Make, tmp_db: str
    ) -> None:
        """When another delivery of the event commits its inbox row between our check and
        our insert, the insert's conflict is a duplicate: acknowledged, effect not applied."""
        engine = create_async_engine(tmp_db)
        async with engine.begin() as conn:
            await conn.run_sync(effects_md.create_all)
        calls: list[str] = []

        async def apply(event: RideRequested, session: AsyncSession) -> None:
            calls.append(event.ride_id)
            await session.execute(insert(effects).values(ride_id=event.ride_id))

        path = tmp_db.removeprefix("sqlite+aiosqlite:///")

        def concurrent_commit(
            _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any
        ) -> None:
            # The other replica commits the same event's inbox row just before ours.
            if statement.startswith("INSERT INTO corral_inbox"):
                with sqlite3.connect(path) as other:
                    other.execute("INSERT INTO corral_inbox VALUES (?, ?, 0)", params[:2])

        events = await make("matching", {"ride.requested": apply}, engine=engine)
        # The hook blocks the event loop while it writes: let the relay's first outbox
        # cleanup (a write transaction on the same file) finish first, or both wait.
        await eventually(lambda: events.relay.last_cleanup > 0, what="first outbox cleanup")
        sa_event.listen(engine.sync_engine, "before_cursor_execute", concurrent_commit)
        await events.publish("ride.requested", RideRequested(ride_id="r1"))
        await eventually(lambda: events.stats["duplicates"] == 1)
        sa_event.remove(engine.sync_engine, "before_cursor_execute", concurrent_commit)
        assert events.stats["failed"] == 0
        assert events.stats["dead_lettered"] == 0
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
        assert count == 0, "the losing delivery's effect must be rolled back"
        await engine.dispose()

    async def test_outbox_commit_publishes_rollback_does_not(self, make: Make, tmp_db: str) -> None:
        """An event published in a transaction is delivered after commit, never after rollback."""
        engine = create_async_engine(tmp_db)
        got: list[str] = []

        async def on_ride(event: RideRequested) -> None:
            got.append(event.ride_id)

        await make("matching", {"ride.requested": on_ride})
        producer = await make("rides", engine=engine)
        async with AsyncSession(engine) as session:
            async with session.begin():
                await producer.publish(
                    "ride.requested", RideRequested(ride_id="rolled"), session=session
                )
                await session.rollback()
            async with session.begin():
                await producer.publish(
                    "ride.requested", RideRequested(ride_id="kept"), session=session
                )
        await eventually(lambda: got == ["kept"])

        # The relay marks a row sent once the broker's ack arrives, which can be after the
        # consumer already handled the event: poll, do not sample once.
        async def sent() -> bool:
            return await producer.outbox_pending() == 0

        await eventually(sent, what="outbox row marked sent")
        assert got == ["kept"], "the rolled-back event must never be published"
        await engine.dispose()

    async def test_outbox_row_too_large_does_not_block_later_rows(
        self, make: Make, tmp_db: str
    ) -> None:
        """An outbox row bigger than the broker's max_payload (written before a limit
        changed, say) is failed at once; the rows before and after it are delivered and
        marked sent, each published once, and later relay rounds leave it alone."""
        engine = create_async_engine(tmp_db)
        got: list[str] = []

        async def on_ride(event: RideRequested) -> None:
            got.append(event.ride_id)

        await make("matching", {"ride.requested": on_ride})
        producer = await make("rides", engine=engine)
        published = count_publishes(producer)
        limit = producer.transport.max_payload()
        assert limit is not None
        async with AsyncSession(engine) as session, session.begin():
            first = await producer.publish(
                "ride.requested", RideRequested(ride_id="r1"), session=session
            )
            await session.execute(
                insert(outbox).values(
                    id="too-large",
                    topic="ride.requested",
                    subject=f"{self.system()}.ride.requested",
                    headers="{}",
                    body=b"x" * (limit + 1),
                    created_at=time.time(),
                    attempts=0,
                )
            )
            last = await producer.publish(
                "ride.requested", RideRequested(ride_id="r2"), session=session
            )

        async def drained() -> bool:
            return await producer.outbox_pending() == 0

        await eventually(drained, what="the rows around the large one sent")
        await eventually(lambda: got == ["r1", "r2"])
        assert await producer.outbox_failed() == ["too-large"]
        # The relay counts the failure after its transaction commits: the row reads as
        # failed a moment before the relay task resumes to count it (seen under load).
        await eventually(lambda: producer.stats["outbox_failed"] >= 1, what="the report")
        for _ in range(3):
            assert await producer.relay_once() == 0
        assert producer.stats["outbox_failed"] == 1
        assert published == {first: 1, "too-large": 1, last: 1}
        await engine.dispose()

    async def test_outbox_publish_too_large_fails_in_the_transaction(
        self, make: Make, tmp_db: str
    ) -> None:
        """publish(session=...) of an event bigger than max_payload raises at once, with
        the sizes, instead of writing a row the relay can never send."""
        engine = create_async_engine(tmp_db)
        producer = await make("rides", engine=engine)
        limit = producer.transport.max_payload()
        assert limit is not None
        async with AsyncSession(engine) as session, session.begin():
            with pytest.raises(PayloadTooLargeError, match=f"at most {limit}"):
                await producer.publish(
                    "ride.requested", RideRequested(ride_id="x" * limit), session=session
                )
        with pytest.raises(PayloadTooLargeError):
            await producer.publish("ride.requested", RideRequested(ride_id="x" * limit))
        assert await producer.outbox_pending() == 0
        assert await producer.outbox_failed() == []
        await engine.dispose()

    async def test_outbox_relay_tries_nothing_while_disconnected(
        self, make: Make, tmp_db: str
    ) -> None:
        """While the transport is not connected a relay round publishes nothing and counts
        no attempt against any row; once it is, the same rows go, each once."""
        engine = create_async_engine(tmp_db)
        producer = await make("rides", engine=engine)
        await producer.relay.stop()  # rounds by hand below
        published = count_publishes(producer)
        async with AsyncSession(engine) as session, session.begin():
            ids = [
                await producer.publish(
                    "ride.requested", RideRequested(ride_id=f"r{n}"), session=session
                )
                for n in range(2)
            ]
        transport = producer.transport
        connected = transport.connected

        async def disconnected() -> bool:
            return False

        transport.connected = disconnected  # type: ignore[method-assign]
        for _ in range(3):
            assert await producer.relay_once() == 0
        assert published == {}
        async with engine.connect() as conn:
            attempts = await conn.scalar(select(func.max(outbox.c.attempts)))
        assert attempts == 0
        assert await producer.outbox_pending() == 2
        transport.connected = connected  # type: ignore[method-assign]
        assert await producer.relay_once() == 2
        assert published == {ids[0]: 1, ids[1]: 1}
        await engine.dispose()

    async def test_outbox_row_refused_counts_attempts_then_fails(
        self, make: Make, tmp_db: str
    ) -> None:
        """A row the broker keeps refusing is retried up to outbox_max_attempts, then
        failed; the rows around it are sent once and not published again meanwhile."""
        engine = create_async_engine(tmp_db)
        got: list[str] = []

        async def on_ride(event: RideRequested) -> None:
            got.append(event.ride_id)

        await make("matching", {"ride.requested": on_ride})
        producer = await make("rides", engine=engine)
        producer.relay.max_attempts = 3
        poison: set[str] = set()
        published = count_publishes(producer, refuse=poison)
        async with AsyncSession(engine) as session, session.begin():
            ids = [
                await producer.publish(
                    "ride.requested", RideRequested(ride_id=f"r{n}"), session=session
                )
                for n in range(3)
            ]
            poison.add(ids[1])
        await eventually(lambda: producer.stats["outbox_failed"] == 1)
        await eventually(lambda: got == ["r0", "r2"])
        assert await producer.outbox_failed() == [ids[1]]
        assert published == {ids[0]: 1, ids[1]: 3, ids[2]: 1}
        await engine.dispose()

    async def test_replicas_relaying_one_refused_row_count_every_attempt(
        self, make: Make, tmp_db: str
    ) -> None:
        """Two replicas' relays (own engines, one SQLite file) retry the same refused row
        at the same moment: every refusal is counted, none lost, so the row fails after
        outbox_max_attempts publishes in all (plus at most one per relay in flight)."""
        databases = [Database() for _ in range(2)]  # configured as svc.db is
        for database in databases:
            await database.start(tmp_db)
        engines = [database.engine for database in databases]
        replicas = [await make("rides", engine=engine) for engine in engines]
        poison: set[str] = set()
        publishes = [count_publishes(replica, refuse=poison) for replica in replicas]
        for replica in replicas:
            replica.relay.max_attempts = 6
        async with AsyncSession(engines[0]) as session, session.begin():
            row_id = await replicas[0].publish(
                "ride.requested", RideRequested(ride_id="r1"), session=session
            )
            poison.add(row_id)
        for _ in range(3):  # both relays read the row before either writes back
            await asyncio.gather(*(replica.relay_once() for replica in replicas))
        await eventually(
            lambda: (
                replicas[0].stats["outbox_failed"] >= 1 or replicas[1].stats["outbox_failed"] >= 1
            )
        )
        async with AsyncSession(engines[0]) as session:
            attempts = await session.scalar(select(outbox.c.attempts).where(outbox.c.id == row_id))
        refused = sum(counts.get(row_id, 0) for counts in publishes)
        assert attempts == 6, publishes
        # Four relays may be in flight at the limit: each replica's own loop and the
        # test's relay_once; each overshoots by at most its one publish, uncounted.
        assert 6 <= refused <= 6 + 3, publishes
        assert sum(replica.stats["outbox_failed"] for replica in replicas) == 1
        for database in databases:
            await database.stop()

    async def test_schema_mismatch_fails_on_publish(self, make: Make) -> None:
        """Publishing a payload that does not match the topic's model fails in development."""

        async def on_ride(event: RideRequested) -> None:
            pass

        events = await make("matching", {"ride.requested": on_ride})
        with pytest.raises(EventSchemaError, match="carries RideRequested"):
            await events.publish("ride.requested", Other(name="x"))
        with pytest.raises(EventSchemaError, match="does not match"):
            await events.publish("ride.requested", RideRequested.model_construct(ride_id=5))
        with pytest.raises(EventSchemaError):
            await events.publish("ride.requested", {"seats": 2})

    async def test_per_key_order_survives_retries(self, make: Make) -> None:
        """On a per-key ordered topic, one key's events are handled in order, even when
        one of them fails first (the key waits for its retry)."""
        ordered = TopicConfig(
            name="ride.updated", partitions=2, backoff=(0.05,), max_deliveries=3, ack_wait=5.0
        )
        seen: list[tuple[str, int]] = []
        failed: set[int] = set()

        async def on_update(event: dict[str, Any]) -> None:
            key, n = event["ride"], event["n"]
            if key == "a" and n == 3 and n not in failed:
                failed.add(n)
                raise RuntimeError("once")
            seen.append((key, n))

        await make("tracking", {"ride.updated": on_update}, topics=(ordered,))
        await make("tracking", {"ride.updated": on_update}, topics=(ordered,))
        producer = await make("rides", topics=(ordered,))
        for n in range(10):
            for key in ("a", "b"):
                await producer.publish("ride.updated", {"ride": key, "n": n}, key=key, wait=False)
        await producer.flush()
        await eventually(lambda: len(seen) == 20)
        for key in ("a", "b"):
            assert [n for k, n in seen if k == key] == list(range(10))

    async def test_trace_continues_through_retry_and_replay(
        self, make: Make, spans: tuple[TracerProvider, InMemorySpanExporter]
    ) -> None:
        """Consumer spans (each retry) are children of the producer span; after a replay the
        consumer span is a child of the replay span, itself a child of the producer's."""
        provider, exporter = spans
        failing = True

        async def handler(event: RideRequested) -> None:
            if failing:
                raise RuntimeError("nope")

        events = await make("matching", {"ride.requested": handler})
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("POST /rides") as request_span:
            await events.publish("ride.requested", RideRequested(ride_id="r1"))
        trace_id = request_span.get_span_context().trace_id
        await eventually(lambda: events.stats["dead_lettered"] == 1)
        failing = False
        letter = (await events.dead_letters())[0]
        await events.replay(letter.seq)
        await eventually(lambda: events.stats["processed"] == 1)

        def by_name(name: str) -> list[Any]:
            return [s for s in exporter.get_finished_spans() if s.name == name]

        await eventually(lambda: len(by_name("ride.requested process")) == 4)
        (producer,) = by_name("ride.requested publish")
        (replay,) = by_name("ride.requested replay")
        assert producer.kind is SpanKind.PRODUCER
        assert producer.parent.span_id == request_span.get_span_context().span_id
        assert replay.parent.span_id == producer.context.span_id
        process = sorted(by_name("ride.requested process"), key=lambda s: s.start_time)
        assert {s.context.trace_id for s in [producer, replay, *process]} == {trace_id}
        assert [s.parent.span_id for s in process[:3]] == [producer.context.span_id] * 3
        assert process[3].parent.span_id == replay.context.span_id
        assert [s.attributes["messaging.delivery.count"] for s in process] == [1, 2, 3, 1]
        assert all(s.kind is SpanKind.CONSUMER for s in process)
