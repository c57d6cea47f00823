"""JetStream transport (nats-py): push consumers bound by queue group, async publishing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from corral.sdk.events._batch_wire import publish_atomic
from corral.sdk.events._topology import (
    ConsumerDef,
    TopicConfig,
    dlq_stream,
    replay_stream,
    stream_name,
    stream_subjects,
)
from corral.sdk.events._transport import DeadLetter, Delivery, Handler, Outgoing, Transport

DLQ_MAX_AGE = 14 * 24 * 3600.0

log = logging.getLogger("corral.events")

ERROR_LOG_EVERY = 10.0
"""Seconds between two log lines of the same connection error."""


def stream_config(system: str, topic: TopicConfig) -> js_api.StreamConfig:
    """The JetStream stream for a topic (the broker provisions it; the SDK may create it)."""
    return js_api.StreamConfig(
        name=stream_name(system, topic.name),
        subjects=stream_subjects(system, topic),
        retention=js_api.RetentionPolicy(topic.retention),
        max_age=topic.max_age or 0,
        max_bytes=topic.max_bytes or -1,
        max_msgs=topic.max_msgs or -1,
        num_replicas=topic.replicas,
        storage=js_api.StorageType.FILE,
        duplicate_window=topic.duplicate_window,
        discard=js_api.DiscardPolicy.OLD,
        allow_atomic=True,  # the outbox relay's batches (corral.sdk.events._batch_wire)
    )


def system_stream_configs(system: str) -> list[js_api.StreamConfig]:
    """The dead-letter stream and the replay work queue of a system."""
    return [
        js_api.StreamConfig(
            name=dlq_stream(system),
            subjects=[f"{system}._dlq.>"],
            retention=js_api.RetentionPolicy.LIMITS,
            max_age=DLQ_MAX_AGE,
            storage=js_api.StorageType.FILE,
            duplicate_window=120.0,
        ),
        js_api.StreamConfig(
            name=replay_stream(system),
            subjects=[f"{system}._replay.>"],
            retention=js_api.RetentionPolicy.WORK_QUEUE,
            storage=js_api.StorageType.FILE,
            duplicate_window=120.0,
        ),
    ]


def consumer_config(definition: ConsumerDef) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=definition.durable,
        deliver_subject=definition.deliver_subject,
        deliver_group=definition.durable,
        filter_subject=definition.filter_subject,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=definition.ack_wait,
        max_deliver=definition.max_deliver,
        max_ack_pending=definition.max_ack_pending,
        deliver_policy=js_api.DeliverPolicy.ALL,
    )


class _NatsDelivery(Delivery):
    __slots__ = ("_msg", "attempt", "body", "headers", "stream", "stream_seq")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.body = msg.data
        self.headers = msg.headers or {}
        # The ack subject carries the delivery count and stream sequence:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
        # (9 tokens; 12 with domain and account hash). Read the two numbers directly
        # rather than through msg.metadata (it builds several objects per message).
        tokens = msg.reply.split(".")
        if len(tokens) == 9 and tokens[1] == "ACK":
            self.attempt, self.stream_seq = int(tokens[4]) or 1, int(tokens[5])
            self.stream = tokens[2]
        else:
            meta = msg.metadata
            self.attempt = meta.num_delivered or 1
            self.stream = meta.stream
            self.stream_seq = meta.sequence.stream

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float) -> None:
        await self._msg.nak(delay=delay if delay > 0 else None)

    async def term(self) -> None:
        await self._msg.term()


class NatsTransport(Transport):
    """JetStream over one connection. ``url`` or an open ``client`` (not closed by us).

    ``connect_timeout``: seconds the first connection may take (``ConnectionError``
    after); once connected, it reconnects without end.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Client | None = None,
        name: str | None = None,
        max_pending_publishes: int = 4000,
        connect_timeout: float = 10.0,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give exactly one of url or client")
        self.url = url
        self._nc = client
        self._owns = client is None
        self._name = name
        self._max_pending = max_pending_publishes
        self.connect_timeout = connect_timeout
        """Seconds the first connection may take (later reconnects never give up)."""
        self._js: JetStreamContext | None = None
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Client:
        assert self._nc is not None, "transport not started"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "transport not started"
        return self._js

    async def start(self) -> None:
        if self._nc is None:
            self._nc = await self._connect()
        self._js = self._nc.jetstream(publish_async_max_pending=self._max_pending)

    async def _connect(self) -> Client:
        """Connected, reconnecting forever afterwards; the first connection is bounded.

        nats-py retries a first connection forever too when reconnects are unlimited
        (``max_reconnect_attempts=-1``): a service would hang in start-up, or a first
        publish in its request, while the bus is away. Bounded here by
        ``connect_timeout``, with the last error in the message.
        """
        assert self.url is not None
        errors: list[Exception] = []

        logged: list[tuple[str, float]] = [("", 0.0)]

        async def on_error(exc: Exception) -> None:
            # nats-py's default logs every failed attempt with a traceback, 4 a second
            # while the bus is away: one line instead, repeated at most every 10 s.
            errors[:] = [exc]
            line, now = f"{type(exc).__name__}: {exc}", time.monotonic()
            if line != logged[0][0] or now - logged[0][1] >= ERROR_LOG_EVERY:
                logged[0] = (line, now)
                log.warning("nats %s: %s", self.url, line)

        client = Client()
        try:
            await asyncio.wait_for(
                client.connect(
                    self.url,
                    name=self._name,
                    max_reconnect_attempts=-1,
                    # Annotated int by nats-py, used as asyncio.sleep's seconds.
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]
                    allow_reconnect=True,
                    error_cb=on_error,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            with contextlib.suppress(Exception):
                await client.close()
            last = f": {type(errors[-1]).__name__}: {errors[-1]}" if errors else ""
            raise ConnectionError(
                f"cannot reach NATS at {self.url} within {self.connect_timeout:g}s{last}"
            ) from None
        return client

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()
        self._subs.clear()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._nc is not None and self._owns:
            if not self._nc.is_closed:
                await self._nc.drain()
            self._nc = None  # a later start() connects again
        self._js = None

    async def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def ensure(
        self, system: str, topics: list[TopicConfig], consumers: list[ConsumerDef]
    ) -> None:
        for config in [*(stream_config(system, t) for t in topics), *system_stream_configs(system)]:
            try:
                await self.js.stream_info(str(config.name))
            except NotFoundError:
                await self.js.add_stream(config)
        for definition in consumers:
            try:
                await self.js.consumer_info(definition.stream, definition.durable)
            except NotFoundError:
                await self.js.add_consumer(definition.stream, consumer_config(definition))

    def max_payload(self) -> int | None:
        return self._nc.max_payload if self._nc is not None else None

    async def publish(self, message: Outgoing) -> asyncio.Future[Any]:
        # Checked here, not left to nats-py: its MaxPayloadError is raised after
        # publish_async took a pending-publish slot that is then never given back.
        self.check_size(message)
        headers = {**message.headers, "Nats-Msg-Id": message.msg_id}
        return await self.js.publish_async(message.subject, message.body, headers=headers)

    async def publish_atomic(self, messages: list[Outgoing], *, ack_timeout: float) -> bool:
        # A message too big for a batch makes it False: one by one, the oversized one is
        # then refused alone (corral.sdk.events._batch_wire checks each size).
        return await publish_atomic(self.client, messages, ack_timeout=ack_timeout)

    async def subscribe(self, consumer: ConsumerDef, handler: Handler, *, ordered: bool) -> None:
        tasks = self._tasks
        loop = asyncio.get_running_loop()
        beat = consumer.ack_wait / 2 if consumer.ack_wait > 0 else 0.0

        async def on_message(msg: Msg) -> None:
            # Eager start: the handler runs now, up to its first real suspension; most
            # handlers (and the ack, a buffered write) finish without ever being scheduled.
            task = asyncio.Task(handler(_NatsDelivery(msg)), loop=loop, eager_start=True)
            if task.done():
                return
            if beat:
                _keep_in_progress(loop, msg, task, beat)
            if ordered:  # one at a time; the consumer's max_ack_pending=1 orders replicas
                await task
                return
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        sub = await self.client.subscribe(
            consumer.deliver_subject, queue=consumer.durable, cb=on_message
        )
        self._subs.append(sub)
        # A PING/PONG round trip: the server has processed the SUB when it answers, so
        # once start() returns this replica is bound to the queue group (without it, an
        # event published right after start() may all go to the replicas bound earlier).
        await self.client.flush()

    # -- dead letters ---------------------------------------------------------------
    async def dlq_add(self, system: str, letter: DeadLetter, *, msg_id: str) -> None:
        body = json.dumps(letter.to_json_dict()).encode()
        subject = f"{system}._dlq.{letter.service}.{letter.topic}"
        await self.js.publish(subject, body, headers={"Nats-Msg-Id": msg_id, **_trace(letter)})

    async def dlq_list(self, system: str) -> list[DeadLetter]:
        try:
            info = await self.js.stream_info(dlq_stream(system))
        except NotFoundError:
            return []
        out: list[DeadLetter] = []
        state = info.state
        if not state.messages:
            return out
        for seq in range(state.first_seq, state.last_seq + 1):
            letter = await self.dlq_get(system, seq)
            if letter is not None:
                out.append(letter)
        return out

    async def dlq_get(self, system: str, seq: int) -> DeadLetter | None:
        try:
            raw = await self.js.get_msg(dlq_stream(system), seq)
        except NotFoundError:
            return None
        if raw.data is None:
            return None
        return DeadLetter.from_json_dict(seq, json.loads(raw.data))

    async def dlq_delete(self, system: str, seq: int) -> bool:
        try:
            return bool(await self.js.delete_msg(dlq_stream(system), seq))
        except NotFoundError:
            return False

    async def dlq_purge(self, system: str) -> int:
        try:
            info = await self.js.stream_info(dlq_stream(system))
        except NotFoundError:
            return 0
        count = int(info.state.messages)
        await self.js.purge_stream(dlq_stream(system))
        return count


def _keep_in_progress(
    loop: asyncio.AbstractEventLoop, msg: Msg, task: asyncio.Task[None], every: float
) -> None:
    """While ``task`` runs, tell the server every ``every`` seconds (half the ack wait)
    that the message is in progress, so a slow handler is not redelivered to another
    replica while it still works (a dead process stops beating and is redelivered)."""
    handle: list[asyncio.TimerHandle] = []

    def beat() -> None:
        if task.done():
            return
        progress = loop.create_task(msg.in_progress())
        progress.add_done_callback(_ignore_result)
        handle[0] = loop.call_later(every, beat)

    handle.append(loop.call_later(every, beat))
    task.add_done_callback(lambda _: handle[0].cancel())


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a lost heartbeat only means an earlier redelivery


def _trace(letter: DeadLetter) -> dict[str, str]:
    return {k: v for k, v in letter.headers.items() if k in ("traceparent", "tracestate")}


def now() -> float:
    return time.time()
