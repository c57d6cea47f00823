"""Consumption: one service's handlers, and what happens to each delivery attempt.

Delivery of one event to one consuming service (the logic; transports only move bytes):

1. the envelope is parsed and the payload validated into the handler's model
   (a malformed event can never succeed: it goes to the dead letters at once);
2. a CONSUMER span starts as a child of the producer's trace context;
3. the handler runs; with an ``AsyncSession`` parameter it runs inside a transaction
   that also inserts ``(service, event id)`` into the inbox, so a redelivered event
   whose effect already committed is recognised and skipped (a constraint violation is
   a duplicate only when that inbox row exists after the rollback; the handler's own
   violations are ordinary failures);
4. success -> ack (only after the commit); an exception -> nak with the topic's
   backoff; after ``max_deliveries`` failures -> the dead-letter stream (error and
   delivery history), then term. The dead letter's ``Nats-Msg-Id`` is derived from the
   delivered message (service, stream, sequence), so a dead letter stored again after a
   crash or a lost term is dropped by JetStream; a dead letter that cannot be stored
   naks the event (retried later) rather than leaving it unsettled.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from corral.sdk.events import _tracing
from corral.sdk.events._envelope import Envelope
from corral.sdk.events._faults import Faults
from corral.sdk.events._handlers import HandlerFn, HandlerSpec, inspect_handler
from corral.sdk.events._tables import inbox
from corral.sdk.events._topology import (
    ConsumerDef,
    Topology,
    consumers_for,
    replay_consumer,
)
from corral.sdk.events._transport import DeadLetter, Delivery, Transport

log = logging.getLogger("corral.events")

EXHAUSTED = "attempts exhausted without a result"


class Consumer:
    """The handlers of one service instance and the delivery of events to them.

    ``history_limit``: failed events whose attempts are remembered for their dead letter.
    ``dead_letter_retry``: seconds before an event whose dead letter could not be stored
    comes back.
    """

    def __init__(self, service: str, *, stats: dict[str, int]) -> None:
        self.service = service
        self.stats = stats
        self.handlers: dict[str, HandlerSpec] = {}
        self.history: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """Failed attempts seen by this instance, per (topic, event id), for the dead
        letter. An entry whose retry went to another replica is never popped here, so
        the dict keeps only the ``history_limit`` most recently failed events."""
        self.history_limit = 10_000
        self.dead_letter_retry = 5.0
        self.faults: Faults | None = None
        """Tests only (see corral.sdk.testing)."""
        # Set by bind():
        self.instance = service
        self.topology = Topology(system="corral")
        self._transport: Transport | None = None
        self._tracer = _tracing.get_tracer(None)
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    def add(self, topic: str, fn: HandlerFn) -> HandlerSpec:
        if topic in self.handlers:
            raise ValueError(f"{self.service} already handles {topic!r}")
        spec = inspect_handler(topic, fn)
        self.handlers[topic] = spec
        return spec

    def definitions(self, topics: list[str]) -> list[ConsumerDef]:
        """The durable consumers this service binds for ``topics`` (those it handles),
        and its replay queue's when it handles anything."""
        defs = [d for t in topics if t in self.handlers for d in self._consumers(t)]
        if self.handlers:
            defs.append(replay_consumer(self.topology.system, self.service))
        return defs

    def _consumers(self, topic: str) -> list[ConsumerDef]:
        return consumers_for(self.topology.system, self.service, self.topology.topic(topic))

    # -- lifecycle ----------------------------------------------------------------------
    def bind(
        self,
        *,
        transport: Transport,
        topology: Topology,
        instance: str,
        engine: AsyncEngine | None,
        tracer: trace.Tracer,
    ) -> None:
        """What the events component knows once it starts (configured late)."""
        self._transport = transport
        self.topology = topology
        self.instance = instance
        self._tracer = tracer
        self._sessions = async_sessionmaker(engine, expire_on_commit=False) if engine else None

    async def listen(self) -> None:
        """Bind this instance to its consumers (the streams and consumers exist)."""
        transport, topology = self.transport, self.topology
        for topic in sorted(self.handlers):
            for definition in self._consumers(topic):
                await transport.subscribe(
                    definition, self.on_delivery, ordered=definition.partition is not None
                )
        if self.handlers:
            await transport.subscribe(
                replay_consumer(topology.system, self.service), self.on_delivery, ordered=False
            )

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError(f"the consumer of {self.service!r} is not started")
        return self._transport

    # -- one delivery -------------------------------------------------------------------
    async def on_delivery(self, delivery: Delivery) -> None:
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            await self._dead_letter(delivery, None, f"malformed envelope: {exc}", "?")
            return
        topic = envelope.type
        spec = self.handlers.get(topic)
        config = self.topology.topic(topic)
        parent = _tracing.extract(delivery.headers)
        with self._tracer.start_as_current_span(
            f"{topic} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                _tracing.SYSTEM_ATTR: "nats",
                _tracing.DESTINATION_ATTR: topic,
                _tracing.MESSAGE_ID_ATTR: envelope.id,
                _tracing.DELIVERY_COUNT_ATTR: delivery.attempt,
                _tracing.CONSUMER_GROUP_ATTR: self.service,
            },
        ) as span:
            if spec is None:
                await self._dead_letter(delivery, envelope, "no handler for this topic", topic)
                return
            if delivery.attempt > config.max_deliveries:
                # The previous attempt never settled (process died, ack wait expired).
                await self._dead_letter(delivery, envelope, EXHAUSTED, topic)
                return
            try:
                payload = spec.model.model_validate(envelope.data) if spec.model else envelope.data
            except ValidationError as exc:  # can never succeed: no retries
                span.set_status(Status(StatusCode.ERROR, "invalid payload"))
                await self._dead_letter(delivery, envelope, f"invalid payload: {exc}", topic)
                return
            try:
                await self._run(spec, payload, envelope)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                self.stats["failed"] += 1
                history = self._remember_failure((topic, envelope.id))
                history.append(
                    {
                        "attempt": delivery.attempt,
                        "error": f"{type(exc).__name__}: {exc}",
                        "at": time.time(),
                        "instance": self.instance,
                    }
                )
                if delivery.attempt >= config.max_deliveries:
                    await self._dead_letter(delivery, envelope, history[-1]["error"], topic)
                else:
                    await delivery.nak(config.delay(delivery.attempt))
                return
        self.history.pop((topic, envelope.id), None)
        self.stats["processed"] += 1
        if self.faults is not None and self.faults.lose_ack():
            return
        await delivery.ack()

    def _remember_failure(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        # Re-inserted at the end: insertion order is failure order, oldest evicted first.
        history = self.history.pop(key, [])
        self.history[key] = history
        while len(self.history) > self.history_limit:
            del self.history[next(iter(self.history))]
        return history

    async def _run(self, spec: HandlerSpec, payload: Any, envelope: Envelope) -> None:
        kwargs: dict[str, Any] = {}
        if spec.payload_param:
            kwargs[spec.payload_param] = payload
        if spec.envelope_param:
            kwargs[spec.envelope_param] = envelope
        if spec.session_param is None:
            await spec.fn(**kwargs)
            return
        if self._sessions is None:
            raise RuntimeError(
                f"handler {spec.fn.__qualname__} takes a session: give Events(engine=...)"
            )
        seen = select(inbox.c.event_id).where(
            inbox.c.consumer == self.service, inbox.c.event_id == envelope.id
        )
        row = {"consumer": self.service, "event_id": envelope.id, "processed_at": time.time()}
        try:
            async with self._sessions() as session, session.begin():
                if not await self._record(session, seen, row):
                    self.stats["duplicates"] += 1
                    return
                kwargs[spec.session_param] = session
                await spec.fn(**kwargs)
        except IntegrityError:
            # Only the inbox row's conflict means "a concurrent delivery of this event
            # committed first". The handler's own constraint violations (raised by its
            # statements or at commit) are failures: retried, then dead-lettered. The
            # transaction is rolled back by now, so whether the row exists decides.
            async with self._sessions() as session:
                if (await session.execute(seen)).first() is None:
                    raise
            self.stats["duplicates"] += 1

    async def _record(self, session: AsyncSession, seen: Any, row: dict[str, Any]) -> bool:
        """Insert the inbox row; False when it was there already (a duplicate).

        One statement where the database has ``INSERT ... ON CONFLICT DO NOTHING``
        (SQLite, PostgreSQL): no row inserted means the event's effect committed
        before. On PostgreSQL a concurrent delivery's uncommitted row makes it wait
        for that transaction, then insert (it rolled back) or skip (it committed):
        the same verdict as the read-then-insert below, a statement less per event.
        """
        upsert = _insert_or_nothing(session.get_bind().dialect.name)
        if upsert is not None:
            result = await session.execute(upsert(inbox).values(**row).on_conflict_do_nothing())
            return bool(cast(CursorResult[Any], result).rowcount)
        if (await session.execute(seen)).first() is not None:
            return False
        await session.execute(insert(inbox).values(**row))
        return True

    async def _dead_letter(
        self, delivery: Delivery, envelope: Envelope | None, error: str, topic: str
    ) -> None:
        event_id = envelope.id if envelope else f"seq-{delivery.stream_seq}"
        history = self.history.pop((topic, event_id), [])
        if history and error == EXHAUSTED:  # the last recorded failure says more
            error = f"{EXHAUSTED}; last error: {history[-1]['error']}"
        letter = DeadLetter(
            seq=0,
            service=self.service,
            topic=topic if topic != "?" else "unknown",
            event_id=event_id,
            error=error,
            deliveries=delivery.attempt,
            dead_at=time.time(),
            history=history,
            event=json.loads(envelope.to_bytes()) if envelope else {},
            headers={k: v for k, v in delivery.headers.items() if not k.startswith("Nats-")},
        )
        # One dead letter per delivered message: JetStream drops a second one with this
        # id (e.g. stored again because the term below was lost, or the process died).
        msg_id = f"dlq:{self.service}:{event_id}:{delivery.stream}:{delivery.stream_seq}"
        try:
            await self.transport.dlq_add(self.topology.system, letter, msg_id=msg_id)
        except Exception as exc:
            # Not stored: keep the event (nak, not term) so a later delivery tries again;
            # the consumer's extra delivery beyond max_deliveries is for exactly this.
            log.warning(
                "dead letter for %s (%s) not stored, event redelivered later: %s: %s",
                event_id,
                topic,
                type(exc).__name__,
                exc,
            )
            if history:
                self._remember_failure((topic, event_id)).extend(history)
            self.stats["dead_letter_errors"] += 1
            await delivery.nak(self.dead_letter_retry)
            return
        self.stats["dead_lettered"] += 1
        await delivery.term()


def _insert_or_nothing(dialect: str) -> Any:
    """The dialect's ``insert`` that has ``on_conflict_do_nothing``, or None (imported
    here: only the dialect in use is loaded)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    return None
