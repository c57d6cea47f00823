"""``Events``: typed publish/subscribe with at-least-once delivery, outbox and inbox.

The facade of one service instance's events: it declares topics and handlers, starts
and stops the parts, and publishes. The parts, one concept each:
:class:`~corral.sdk.events._consumer.Consumer` (handlers, delivery attempts, inbox, dead
letters), :class:`~corral.sdk.events._outbox.OutboxRelay` (events written in the
caller's transaction and relayed after the commit), and the transport (bytes only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from corral import contract
from corral.sdk.events import _tracing
from corral.sdk.events._consumer import Consumer
from corral.sdk.events._envelope import TYPE_HEADER, encode_envelope, new_event_id
from corral.sdk.events._errors import (
    NotStartedError,
    PayloadTooLargeError,
    PublishError,
)
from corral.sdk.events._handlers import HandlerFn
from corral.sdk.events._outbox import OutboxRelay
from corral.sdk.events._payloads import Payloads
from corral.sdk.events._replay import replay_dead_letter
from corral.sdk.events._tables import create_tables
from corral.sdk.events._topology import Topology, partition_of, subject
from corral.sdk.events._transport import DeadLetter, Outgoing, Transport

log = logging.getLogger("corral.events")

ENV_MODE = "CORRAL_ENV"
"""``production`` turns off payload re-validation on publish; anything else is development."""

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

NOT_STARTED = "events of {service!r} are not started: `await events.start()` first"


RECONNECT_GRACE_S = 30.0
"""Seconds a lost broker connection keeps the service ready. The client reconnects by
itself, the outbox keeps what is published meanwhile and consumers resume where they
were; and every instance loses the same broker at the same moment, so failing
readiness at once would take every instance out of the gateway's endpoints for a bus
restart: a full outage made of a short one. Longer than that, the bus is really gone
and the service says so."""


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
        ``tracer_provider``: where the producer and consumer spans go (default: the
        global provider).
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
        self._tracer = _tracing.get_tracer(tracer_provider)
        self.validate = (
            validate if validate is not None else os.environ.get(ENV_MODE) != "production"
        )
        self._ensure = ensure
        self.publish_timeout = publish_timeout
        self._payloads = Payloads()
        self._ensured: set[str] = set()
        self._pending: set[asyncio.Future[Any]] = set()
        self._started = False
        self._lost_at: float | None = None
        """When readiness first saw the broker connection down (None: it is up)."""
        self.reconnect_grace = RECONNECT_GRACE_S
        self._on_first_use: Callable[[], Awaitable[None]] | None = None
        self._first_use: asyncio.Lock | None = None
        self.not_started_hint = NOT_STARTED
        """The message of :class:`NotStartedError` (what to do), ``{service}`` filled in."""
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
        self.consumer = Consumer(service, stats=self.stats)
        """Handlers and delivery (``history_limit``, ``dead_letter_retry``)."""
        self.relay = OutboxRelay(
            service,
            stats=self.stats,
            poll_interval=outbox_poll_interval,
            batch=outbox_batch,
            retention=outbox_retention,
            max_attempts=outbox_max_attempts,
            publish_timeout=publish_timeout,
        )
        """The outbox and its relay (``max_attempts``, ``poll_interval``, ...)."""
        self.relay.engine = engine

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise NotStartedError(f"events of {self.service!r} have no transport yet")
        return self._transport

    @property
    def started(self) -> bool:
        return self._started

    def configure(
        self,
        *,
        transport: Transport | None = None,
        topology: Topology | None = None,
        instance: str | None = None,
        engine: AsyncEngine | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        """Late configuration (the SDK's Service does this at start, from the env)."""
        if transport is not None:
            self._transport = transport
        if topology is not None:
            self.topology = topology
            self.system = topology.system
        if instance:
            self.instance = instance
        if engine is not None:
            self._engine = engine
            self.relay.engine = engine
        if tracer_provider is not None:
            self._tracer = _tracing.get_tracer(tracer_provider)

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
        instance = env.get(contract.INSTANCE)
        self.configure(
            transport=NatsTransport(
                env.get(contract.NATS_URL, DEFAULT_NATS_URL), name=instance or self.service
            ),
            topology=topology_from_env(),
            instance=instance,
            engine=engine,
        )

    # -- declaring ----------------------------------------------------------------------
    def topic(self, name: str, model: type[BaseModel]) -> None:
        """Declare the payload model of ``name``: publishing anything else fails (dev)."""
        self._payloads.declare(name, model)

    def subscribe(self, topic: str) -> Callable[[HandlerFn], HandlerFn]:
        """Decorator: handle ``topic``. Replicas of this service compete for its events."""

        def register(fn: HandlerFn) -> HandlerFn:
            if self._started:
                raise RuntimeError("subscribe before start()")
            spec = self.consumer.add(topic, fn)
            if spec.model is not None:
                self.topic(topic, spec.model)
            return fn

        return register

    @property
    def declared(self) -> bool:
        """Whether this instance declared handlers or payload models (so it uses events)."""
        return bool(self.consumer.handlers or self._payloads.models)

    def named_topics(self) -> list[str]:
        """The topics the topology names this service a producer or consumer of."""
        return [
            name
            for name, t in self.topology.topics.items()
            if self.service in t.producers or self.service in t.consumers
        ]

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, create tables and missing streams, bind consumers, start the relay."""
        transport = self.transport
        await transport.start()
        try:
            if self._engine is not None:
                await create_tables(self._engine)
            self.consumer.bind(
                transport=transport,
                topology=self.topology,
                instance=self.instance,
                engine=self._engine,
                tracer=self._tracer,
            )
            topics = sorted({*self.consumer.handlers, *self._payloads.models, *self.named_topics()})
            if self._ensure:
                await self._ensure_topics(topics)
            await self.consumer.listen()
        except BaseException:
            with contextlib.suppress(Exception):
                await transport.close()
            raise
        self._started = True
        if self._engine is not None:
            self.relay.start(transport)

    async def stop(self) -> None:
        """Stop the relay, let in-flight handlers finish, wait for pending acks, close."""
        self._on_first_use = None
        if not self._started:
            return
        self._started = False
        await self.relay.stop()
        try:
            await self.flush(timeout=self.publish_timeout)
        except Exception as exc:  # said, not raised: stopping goes on
            log.warning(
                "events of %s stopped with wait=False publishes not acknowledged: %s: %s",
                self.service,
                type(exc).__name__,
                exc,
            )
        await self.transport.close()

    async def connected(self) -> bool:
        """Readiness: the broker connection is up, or has been down for less than
        :attr:`reconnect_grace` seconds (see :data:`RECONNECT_GRACE_S`)."""
        if not self._started:
            return False
        if await self.transport.connected():
            self._lost_at = None
            return True
        now = time.monotonic()
        if self._lost_at is None:
            self._lost_at = now
        return now - self._lost_at < self.reconnect_grace

    def start_on_first_use(
        self, start: Callable[[], Awaitable[None]] | None, *, hint: str | None = None
    ) -> None:
        """Let the first :meth:`publish` of a not started instance call ``start`` (once,
        however many publish at the same moment); ``None`` turns that off. ``hint``
        replaces :attr:`not_started_hint`."""
        self._on_first_use = start
        self._first_use = asyncio.Lock()  # made here: bound to the loop that runs it
        if hint is not None:
            self.not_started_hint = hint

    async def _start_on_first_use(self) -> None:
        if self._on_first_use is None or self._first_use is None:
            raise NotStartedError(self.not_started_hint.format(service=self.service))
        async with self._first_use:
            if not self._started and self._on_first_use is not None:
                await self._on_first_use()
        if not self._started:
            raise NotStartedError(self.not_started_hint.format(service=self.service))

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
            await self._start_on_first_use()
        config = self.topology.topic(topic)
        data = self._payloads.data(topic, payload, validate=self.validate)
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
                if self._engine is None:
                    raise RuntimeError(
                        "publish(session=...) needs Events(engine=...) for the outbox"
                    )
                # Refused now, in the caller's transaction, rather than by the relay later.
                self.transport.check_size(message)
                await self.relay.add(session, topic, message)
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

    async def _ensure_topics(self, topics: list[str]) -> None:
        configs = [self.topology.topic(t) for t in topics]
        await self.transport.ensure(self.system, configs, self.consumer.definitions(topics))
        self._ensured.update(topics)

    # -- the outbox ---------------------------------------------------------------------
    async def relay_once(self) -> int:
        """Publish one batch of unsent outbox rows now; how many were acknowledged."""
        return await self.relay.relay_once()

    async def outbox_pending(self) -> int:
        """Rows the relay still tries to publish (for tests and status)."""
        return await self.relay.pending()

    async def outbox_failed(self) -> list[str]:
        """Ids of outbox rows the relay gave up on, oldest first. They stay in the table;
        ``UPDATE corral_outbox SET attempts = 0 WHERE id = ...`` sends one again."""
        return await self.relay.failed()

    # -- dead letters -------------------------------------------------------------------
    async def dead_letters(self) -> list[DeadLetter]:
        return await self.transport.dlq_list(self.system)

    async def replay(self, seq: int) -> bool:
        """Send dead letter ``seq`` back to the service that failed it."""
        return await replay_dead_letter(self.transport, self.system, seq, tracer=self._tracer)


def topology_from_env() -> Topology:
    """``CORRAL_EVENTS`` (the topics of this service), else an empty one of ``CORRAL_SYSTEM``."""
    env = os.environ
    if env.get(contract.EVENTS):
        return Topology.from_json(env[contract.EVENTS])
    return Topology(system=env.get(contract.SYSTEM, "corral"))
