"""``Events``: typed publish/subscribe with at-least-once delivery, outbox and inbox.

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

Publishing with ``session=`` writes the event to the outbox table in the caller's
transaction; a relay task, woken right after commit (and by a slow safety poll),
publishes unsent rows with ``Nats-Msg-Id`` = event id (JetStream drops duplicates)
and marks each acknowledged row sent. A row the broker refuses counts an attempt (not
when the connection is down or the acknowledgement only timed out); a row that can never
be published (bigger than max_payload) or that reached ``outbox_max_attempts`` is left
as failed (logged, ``stats["outbox_failed"]``, :meth:`Events.outbox_failed`) and no
longer holds up the rows after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from corral import contract
from corral.sdk.events import _tracing
from corral.sdk.events._envelope import TYPE_HEADER, Envelope, encode_envelope, new_event_id
from corral.sdk.events._errors import (
    EventSchemaError,
    NotStartedError,
    PayloadTooLargeError,
    PublishError,
)
from corral.sdk.events._handlers import HandlerFn, HandlerSpec, inspect_handler
from corral.sdk.events._tables import inbox, metadata, outbox
from corral.sdk.events._topology import (
    ConsumerDef,
    TopicConfig,
    Topology,
    consumers_for,
    partition_of,
    replay_consumer,
    replay_subject,
    subject,
)
from corral.sdk.events._transport import DeadLetter, Delivery, Outgoing, Transport

CRASH_HOOK = "CORRAL_EVENTS_TEST_CRASH"
"""Test hook: ``after-commit`` or ``after-publish`` kills the process (SIGKILL) at that
point of the outbox path, to prove no event is lost or duplicated."""

log = logging.getLogger("corral.events")

EXHAUSTED = "attempts exhausted without a result"

ENV_MODE = "CORRAL_ENV"
"""``production`` turns off payload re-validation on publish; anything else is development."""


class Events:
    """The events component of one service instance.

    >>> events = Events("rides", transport=MemoryBroker().transport())  # doctest: +SKIP
    >>> @events.subscribe("ride.requested")
    ... async def on_requested(event: RideRequested, session: AsyncSession) -> None: ...
    >>> await events.start()
    >>> await events.publish("ride.requested", RideRequested(ride_id="r1"))
    """

    def __init__(
        self,
        service: str,
        *,
        transport: Transport | None,
        system: str = "corral",
        topology: Topology | None = None,
        instance: str | None = None,
        engine: AsyncEngine | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        validate: bool | None = None,
        ensure: bool = True,
        publish_timeout: float = 10.0,
        outbox_poll_interval: float = 1.0,
        outbox_batch: int = 500,
        outbox_retention: float = 3600.0,
        outbox_max_attempts: int = 10,
    ) -> None:
        """``transport``: :class:`NatsTransport` or a :class:`MemoryBroker`'s transport.
        ``topology``: topic settings (from ``CORRAL_EVENTS`` under ``corral up``).
        ``engine``: the service's database, for the outbox and the inbox.
        ``validate``: re-validate payloads on publish (default: unless CORRAL_ENV=production).
        ``ensure``: create missing streams and consumers (never changes existing ones).
        ``outbox_max_attempts``: refusals by the broker before an outbox row is failed.
        """
        self.service = service
        self.instance = instance or f"{service}-{os.getpid()}"
        self.topology = topology or Topology(system=system)
        self.system = self.topology.system
        self._transport = transport
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False) if engine else None
        self._tracer = _tracing.get_tracer(tracer_provider)
        self.validate = (
            validate if validate is not None else os.environ.get(ENV_MODE) != "production"
        )
        self._ensure = ensure
        self.publish_timeout = publish_timeout
        self.outbox_poll_interval = outbox_poll_interval
        self.outbox_batch = outbox_batch
        self.outbox_retention = outbox_retention
        self.outbox_max_attempts = outbox_max_attempts
        self._models: dict[str, type[BaseModel]] = {}
        self._handlers: dict[str, HandlerSpec] = {}
        self._ensured: set[str] = set()
        self._pending: set[asyncio.Future[Any]] = set()
        self._history: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """Failed attempts seen by this instance, per (topic, event id), for the dead
        letter. An entry whose retry went to another replica is never popped here, so
        the dict keeps only the ``history_limit`` most recently failed events."""
        self.history_limit = 10_000
        self._wake = asyncio.Event()
        self._relay: asyncio.Task[None] | None = None
        self._started = False
        self._last_cleanup = 0.0
        self.dead_letter_retry = 5.0
        """Seconds before an event whose dead letter could not be stored comes back."""
        self.drop_acks = 0
        """Test hook: swallow this many acknowledgements (as if lost), forcing redelivery."""
        self.stats: dict[str, int] = {
            "published": 0,
            "outboxed": 0,
            "relayed": 0,
            "processed": 0,
            "duplicates": 0,
            "failed": 0,
            "dead_lettered": 0,
            "outbox_failed": 0,
            "dead_letter_errors": 0,
        }

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise NotStartedError(f"events of {self.service!r} have no transport yet")
        return self._transport

    def configure(
        self,
        *,
        transport: Transport,
        topology: Topology | None = None,
        instance: str | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        """Late configuration (the SDK's Service does this at start, from the env)."""
        self._transport = transport
        if topology is not None:
            self.topology = topology
            self.system = topology.system
        if instance:
            self.instance = instance
        if engine is not None:
            self._engine = engine
            self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- construction from the runtime contract ---------------------------------------
    @classmethod
    def from_env(
        cls, service: str | None = None, *, engine: AsyncEngine | None = None, **options: Any
    ) -> Events:
        """Read NATS_URL, CORRAL_EVENTS, CORRAL_SYSTEM, CORRAL_SERVICE, CORRAL_INSTANCE."""
        env = os.environ
        name = env.get(contract.SERVICE) or service
        if not name:
            raise ValueError(f"no service name: pass one or set {contract.SERVICE}")
        events = cls(name, transport=None, **options)
        events.configure_from_env(engine=engine)
        return events

    def configure_from_env(self, *, engine: AsyncEngine | None = None) -> None:
        """NATS_URL (default nats://127.0.0.1:4222), CORRAL_EVENTS, CORRAL_SYSTEM,
        CORRAL_INSTANCE from the runtime contract."""
        from corral.sdk.events._nats import NatsTransport

        env = os.environ
        topology = (
            Topology.from_json(env[contract.EVENTS])
            if env.get(contract.EVENTS)
            else Topology(system=env.get(contract.SYSTEM, "corral"))
        )
        url = env.get(contract.NATS_URL, "nats://127.0.0.1:4222")
        instance = env.get(contract.INSTANCE)
        self.configure(
            transport=NatsTransport(url, name=instance or self.service),
            topology=topology,
            instance=instance,
            engine=engine,
        )

    # -- declaring ----------------------------------------------------------------------
    def topic(self, name: str, model: type[BaseModel]) -> None:
        """Declare the payload model of ``name``: publishing anything else fails (dev)."""
        known = self._models.setdefault(name, model)
        if known is not model:
            raise ValueError(f"topic {name!r} already has payload model {known.__name__}")

    def subscribe(self, topic: str) -> Callable[[HandlerFn], HandlerFn]:
        """Decorator: handle ``topic``. Replicas of this service compete for its events."""

        def register(fn: HandlerFn) -> HandlerFn:
            if self._started:
                raise RuntimeError("subscribe before start()")
            if topic in self._handlers:
                raise ValueError(f"{self.service} already handles {topic!r}")
            spec = inspect_handler(topic, fn)
            if spec.model is not None:
                self.topic(topic, spec.model)
            self._handlers[topic] = spec
            return fn

        return register

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, create tables and missing streams, bind consumers, start the relay."""
        await self.transport.start()
        if self._engine is not None:
            async with self._engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        topics = sorted(
            {
                *self._handlers,
                *self._models,
                *(
                    n
                    for n, t in self.topology.topics.items()
                    if self.service in t.producers or self.service in t.consumers
                ),
            }
        )
        if self._ensure:
            await self._ensure_topics(topics)
        for topic in sorted(self._handlers):
            for definition in self._consumers(topic):
                await self.transport.subscribe(
                    definition, self._on_delivery, ordered=definition.partition is not None
                )
        if self._handlers:
            await self.transport.subscribe(
                replay_consumer(self.system, self.service), self._on_delivery, ordered=False
            )
        self._started = True
        if self._engine is not None:
            self._relay = asyncio.create_task(self._relay_loop(), name=f"{self.service}-outbox")

    async def stop(self) -> None:
        """Stop the relay, let in-flight handlers finish, wait for pending acks, close."""
        self._started = False
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
            self._relay = None
        with contextlib.suppress(Exception):
            await self.flush(timeout=self.publish_timeout)
        await self.transport.close()

    async def connected(self) -> bool:
        """Readiness: the broker connection is up."""
        return self._started and await self.transport.connected()

    # -- publishing ---------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: BaseModel | dict[str, Any],
        *,
        key: str | None = None,
        session: AsyncSession | None = None,
        wait: bool = True,
    ) -> str:
        """Publish an event; returns its id.

        ``session``: write it to the outbox in that session's transaction instead; it is
        published after the commit (never if the transaction rolls back).
        ``key``: ordering key (required on per-key ordered topics).
        ``wait=False``: return once sent; :meth:`flush` waits for the acknowledgements.
        """
        if not self._started:
            raise NotStartedError(f"events of {self.service!r} not started")
        config = self.topology.topic(topic)
        data = self._check_payload(topic, payload)
        if config.partitions and key is None:
            raise ValueError(f"topic {topic!r} is ordered per key: pass key=")
        part = partition_of(key, config.partitions) if config.partitions and key else None
        if self._ensure and topic not in self._ensured:
            await self._ensure_topics([topic])
        # The PRODUCER span is started, not made current: nothing runs inside it but the
        # send, and its context goes into the headers explicitly (cheaper than attach).
        span = self._tracer.start_span(
            f"{topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                _tracing.SYSTEM_ATTR: "nats",
                _tracing.DESTINATION_ATTR: topic,
                "corral.outbox": session is not None,
            },
        )
        try:
            event_id = new_event_id()
            span.set_attribute(_tracing.MESSAGE_ID_ATTR, event_id)
            headers: dict[str, str] = {TYPE_HEADER: topic}
            _tracing.inject(headers, trace.set_span_in_context(span))
            body = encode_envelope(
                event_id=event_id,
                source=self._source,
                type=topic,
                traceparent=headers.get(_tracing.TRACEPARENT),
                key=key,
                data=data,
            )
            message = Outgoing(subject(self.system, topic, part), headers, body, event_id)
            if session is not None:
                # Refused now, in the caller's transaction, rather than by the relay later.
                self.transport.check_size(message)
                await self._to_outbox(session, topic, message)
                return event_id
            future = await self.transport.publish(message)
            self.stats["published"] += 1
            if wait:
                try:
                    await asyncio.wait_for(future, self.publish_timeout)
                except Exception as exc:
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    raise PublishError(f"{topic}: {exc}") from exc
            else:
                self._pending.add(future)
                future.add_done_callback(self._pending.discard)
        except BaseException as exc:
            if not isinstance(exc, PublishError) or isinstance(exc, PayloadTooLargeError):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()
        return event_id

    @property
    def _source(self) -> str:
        return f"/{self.service}/{self.instance}"

    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - bounds a gather
        """Wait until every ``wait=False`` publish was acknowledged; raise the first error."""
        pending = list(self._pending)
        if not pending:
            return
        results = await asyncio.wait_for(
            asyncio.gather(*pending, return_exceptions=True), timeout or self.publish_timeout
        )
        for result in results:
            if isinstance(result, BaseException):
                raise PublishError(str(result)) from result

    def _check_payload(self, topic: str, payload: BaseModel | dict[str, Any]) -> Any:
        model = self._models.get(topic)
        if model is not None and self.validate:
            if isinstance(payload, BaseModel) and not isinstance(payload, model):
                raise EventSchemaError(
                    f"topic {topic!r} carries {model.__name__}, not {type(payload).__name__}"
                )
            raw = (
                payload.model_dump(mode="json", warnings=False)
                if isinstance(payload, BaseModel)
                else payload
            )
            try:
                return model.model_validate(raw).model_dump(mode="json")
            except ValidationError as exc:
                raise EventSchemaError(
                    f"payload for {topic!r} does not match {model.__name__}: {exc}"
                ) from None
        if isinstance(payload, BaseModel):
            return payload.model_dump(mode="json")
        return payload

    # -- outbox -------------------------------------------------------------------------
    async def _to_outbox(self, session: AsyncSession, topic: str, message: Outgoing) -> None:
        if self._engine is None:
            raise RuntimeError("publish(session=...) needs Events(engine=...) for the outbox")
        await session.execute(
            insert(outbox).values(
                id=message.msg_id,
                topic=topic,
                subject=message.subject,
                headers=json.dumps(message.headers),
                body=message.body,
                created_at=time.time(),
                sent_at=None,
                attempts=0,
            )
        )
        sync = session.sync_session
        if not sync.info.get("corral_outbox_hook"):
            sync.info["corral_outbox_hook"] = True
            event.listen(sync, "after_commit", self._after_commit)
        self.stats["outboxed"] += 1

    def _after_commit(self, _session: Session) -> None:
        if os.environ.get(CRASH_HOOK) == "after-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        self._wake.set()

    async def _relay_loop(self) -> None:
        while True:
            # Clear before reading the outbox: a commit during relay_once sets the event
            # again and is picked up by the next round, never lost between wait and clear.
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker or database away: the safety poll retries
                sent = 0
            if sent >= self.outbox_batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.outbox_poll_interval)

    async def relay_once(self) -> int:
        """Publish one batch of unsent outbox rows; returns how many were acknowledged.

        Selects ``sent_at IS NULL`` and ``attempts < outbox_max_attempts`` in created
        order; on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` inside the transaction
        (replicas' relays share the work), on SQLite in a short read transaction (a
        second relay may publish a row twice; JetStream's de-duplication by event id
        drops the copy). Every acknowledged row is marked sent, whatever happened to the
        others; a refused row counts an attempt (see the module docstring).
        """
        assert self._engine is not None
        postgres = self._engine.dialect.name == "postgresql"
        query = (
            select(
                outbox.c.id,
                outbox.c.topic,
                outbox.c.subject,
                outbox.c.headers,
                outbox.c.body,
                outbox.c.attempts,
            )
            .where(outbox.c.sent_at.is_(None), outbox.c.attempts < self.outbox_max_attempts)
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(self.outbox_batch)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True)
        async with self._engine.connect() as conn:
            transaction = await conn.begin()
            rows = (await conn.execute(query)).all()
            if not postgres or not rows:
                await transaction.commit()
            if not rows:
                await self._cleanup(conn)
                return 0
            results = await self._publish_rows(rows)
            if os.environ.get(CRASH_HOOK) == "after-publish":
                os.kill(os.getpid(), signal.SIGKILL)
            ok = [row.id for row, r in zip(rows, results, strict=True) if r is None]
            refused = [
                (row, r)
                for row, r in zip(rows, results, strict=True)
                if isinstance(r, BaseException)
            ]
            counted = await self._counted_refusals(refused)
            if not postgres:
                transaction = await conn.begin()
            if ok:
                await conn.execute(
                    update(outbox).where(outbox.c.id.in_(ok)).values(sent_at=time.time())
                )
            failed: list[tuple[Any, int, BaseException]] = []
            for row, exc, fails_now in counted:
                # Counted in SQL, not from the value read: on SQLite the read was in its
                # own transaction, and another replica's relay may have counted a refusal
                # of the same row since (a lost update would retry it past the limit).
                # Only an unsent row still under the limit: of two relays refused at
                # the limit, one reports the failure, and a row sent meanwhile stays sent.
                attempts = await conn.scalar(
                    update(outbox)
                    .where(
                        outbox.c.id == row.id,
                        outbox.c.sent_at.is_(None),
                        outbox.c.attempts < self.outbox_max_attempts,
                    )
                    .values(
                        attempts=self.outbox_max_attempts if fails_now else outbox.c.attempts + 1
                    )
                    .returning(outbox.c.attempts)
                )
                if attempts is not None and attempts >= self.outbox_max_attempts:
                    failed.append((row, attempts, exc))
            await transaction.commit()
            for row, attempts, exc in failed:
                self._report_failed(row, attempts, exc)
        self.stats["relayed"] += len(ok)
        return len(ok)

    async def _publish_rows(self, rows: Any) -> list[BaseException | bool | None]:
        """Publish rows in order; per row None (acknowledged), an exception (refused),
        or False (not tried: the connection refused an earlier row)."""
        results: list[BaseException | bool | None] = [False] * len(rows)
        futures: dict[int, asyncio.Future[Any]] = {}
        try:
            for index, row in enumerate(rows):
                message = Outgoing(row.subject, json.loads(row.headers), row.body, row.id)
                try:
                    futures[index] = await self.transport.publish(message)
                except PayloadTooLargeError as exc:  # this row only: the rest still go
                    results[index] = exc
                except Exception:  # e.g. reconnect buffer full: retry from here next round
                    break
            settled = await asyncio.gather(
                *(asyncio.wait_for(f, self.publish_timeout) for f in futures.values()),
                return_exceptions=True,
            )
        except BaseException:
            # Cancelled: give back what was sent (nats-py holds a pending-publish slot
            # until a future is done).
            for future in futures.values():
                future.cancel()
            raise
        for index, result in zip(futures, settled, strict=True):
            results[index] = result if isinstance(result, BaseException) else None
        return results

    async def _counted_refusals(
        self, refused: list[tuple[Any, BaseException]]
    ) -> list[tuple[Any, BaseException, bool]]:
        """The refusals that count against a row, each with whether it fails the row at
        once (a row that can never be published). A refusal counts only while the
        connection is up and is not a timeout (a broker that is away or slow is not the
        row's fault: it waits, never fails)."""
        if not refused:
            return []
        up = await self.transport.connected()
        return [
            (row, exc, isinstance(exc, PayloadTooLargeError))
            for row, exc in refused
            if isinstance(exc, PayloadTooLargeError) or (up and not isinstance(exc, TimeoutError))
        ]

    def _report_failed(self, row: Any, attempts: int, exc: BaseException) -> None:
        self.stats["outbox_failed"] += 1
        log.error(
            "outbox event %s (%s) failed after %d attempt(s), no longer retried: %s: %s",
            row.id,
            row.topic,
            attempts,
            type(exc).__name__,
            exc,
        )

    async def _cleanup(self, conn: Any) -> None:
        now = time.time()
        if now - self._last_cleanup < 60:
            return
        self._last_cleanup = now
        async with conn.begin():
            await conn.execute(delete(outbox).where(outbox.c.sent_at < now - self.outbox_retention))

    async def outbox_pending(self) -> int:
        """Rows the relay still tries to publish (for tests and status)."""
        assert self._engine is not None
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.id).where(
                    outbox.c.sent_at.is_(None), outbox.c.attempts < self.outbox_max_attempts
                )
            )
            return len(rows.all())

    async def outbox_failed(self) -> list[str]:
        """Ids of outbox rows the relay gave up on, oldest first. They stay in the table;
        ``UPDATE corral_outbox SET attempts = 0 WHERE id = ...`` sends one again."""
        assert self._engine is not None
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.id)
                .where(outbox.c.sent_at.is_(None), outbox.c.attempts >= self.outbox_max_attempts)
                .order_by(outbox.c.created_at, outbox.c.id)
            )
            return [row.id for row in rows]

    # -- consuming ----------------------------------------------------------------------
    def _consumers(self, topic: str) -> list[ConsumerDef]:
        return consumers_for(self.system, self.service, self.topology.topic(topic))

    async def _ensure_topics(self, topics: list[str]) -> None:
        configs: list[TopicConfig] = [self.topology.topic(t) for t in topics]
        defs = [d for t in topics if t in self._handlers for d in self._consumers(t)]
        if self._handlers:
            defs.append(replay_consumer(self.system, self.service))
        await self.transport.ensure(self.system, configs, defs)
        self._ensured.update(topics)

    async def _on_delivery(self, delivery: Delivery) -> None:
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except ValidationError as exc:
            await self._dead_letter(delivery, None, f"malformed envelope: {exc}", "?")
            return
        topic = envelope.type
        spec = self._handlers.get(topic)
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
        self._history.pop((topic, envelope.id), None)
        self.stats["processed"] += 1
        if self.drop_acks > 0:
            self.drop_acks -= 1
            return
        await delivery.ack()

    def _remember_failure(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        # Re-inserted at the end: insertion order is failure order, oldest evicted first.
        history = self._history.pop(key, [])
        self._history[key] = history
        while len(self._history) > self.history_limit:
            del self._history[next(iter(self._history))]
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
        try:
            async with self._sessions() as session, session.begin():
                if (await session.execute(seen)).first() is not None:
                    self.stats["duplicates"] += 1
                    return
                await session.execute(
                    insert(inbox).values(
                        consumer=self.service, event_id=envelope.id, processed_at=time.time()
                    )
                )
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

    async def _dead_letter(
        self, delivery: Delivery, envelope: Envelope | None, error: str, topic: str
    ) -> None:
        event_id = envelope.id if envelope else f"seq-{delivery.stream_seq}"
        history = self._history.pop((topic, event_id), [])
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
            await self.transport.dlq_add(self.system, letter, msg_id=msg_id)
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

    # -- dead letters -------------------------------------------------------------------
    async def dead_letters(self) -> list[DeadLetter]:
        return await self.transport.dlq_list(self.system)

    async def replay(self, seq: int) -> bool:
        """Send dead letter ``seq`` back to the service that failed it."""
        return await replay_dead_letter(self.transport, self.system, seq, tracer=self._tracer)


async def replay_dead_letter(
    transport: Transport, system: str, seq: int, *, tracer: trace.Tracer | None = None
) -> bool:
    """Republish a dead letter to its service's replay queue, then delete it.

    The replay span is a child of the original producer span, and the consumer's span
    a child of the replay span: one trace from first publish to the replayed handling.
    """
    letter = await transport.dlq_get(system, seq)
    if letter is None:
        return False
    tracer = tracer or _tracing.get_tracer(None)
    with tracer.start_as_current_span(
        f"{letter.topic} replay",
        context=_tracing.extract(letter.headers),
        kind=SpanKind.PRODUCER,
        attributes={
            _tracing.SYSTEM_ATTR: "nats",
            _tracing.DESTINATION_ATTR: letter.topic,
            _tracing.MESSAGE_ID_ATTR: letter.event_id,
            "corral.dead_letter.seq": seq,
        },
    ):
        headers: dict[str, str] = {TYPE_HEADER: letter.topic}
        _tracing.inject(headers)
        event_data = dict(letter.event)
        event_data["traceparent"] = headers.get(_tracing.TRACEPARENT)
        message = Outgoing(
            replay_subject(system, letter.service, letter.topic),
            headers,
            json.dumps(event_data).encode(),
            f"replay:{seq}:{letter.event_id}",
        )
        await asyncio.wait_for(await transport.publish(message), 10.0)
    await transport.dlq_delete(system, seq)
    return True
