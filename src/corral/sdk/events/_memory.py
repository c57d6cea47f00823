"""An in-process broker with JetStream's delivery semantics, for unit tests of handlers.

:class:`MemoryBroker` plays the server (streams, de-duplication, durable consumers with
ack wait, max deliver, max ack pending, competing subscribers); each :class:`Events`
gets a :class:`MemoryTransport` onto it. Nothing is persisted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from corral.sdk.events._topology import (
    ConsumerDef,
    TopicConfig,
    dlq_stream,
    replay_stream,
    stream_name,
    stream_subjects,
)
from corral.sdk.events._transport import DeadLetter, Delivery, Handler, Outgoing, Transport

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default max_payload (1 MB), which the in-memory broker enforces too."""


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching with ``*`` (one token) and ``>`` (the rest)."""
    want, got = pattern.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(got) > index
        if index >= len(got) or (part != "*" and part != got[index]):
            return False
    return len(want) == len(got)


@dataclass
class _Message:
    seq: int
    subject: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Stream:
    name: str
    subjects: list[str]
    messages: dict[int, _Message] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)


@dataclass
class _Subscriber:
    handler: Handler
    ordered: bool


class _Consumer:
    def __init__(self, broker: MemoryBroker, definition: ConsumerDef) -> None:
        self.broker = broker
        self.definition = definition
        self.queue: deque[_Message] = deque()
        self.in_flight: dict[int, asyncio.TimerHandle | None] = {}
        self.attempts: dict[int, int] = {}
        self.subscribers: list[_Subscriber] = []
        self._rr = itertools.count()

    def offer(self, message: _Message) -> None:
        if subject_matches(self.definition.filter_subject, message.subject):
            self.queue.append(message)
            self.pump()

    def pump(self) -> None:
        limit = self.definition.max_ack_pending
        while self.queue and self.subscribers and (limit < 0 or len(self.in_flight) < limit):
            message = self.queue.popleft()
            attempt = self.attempts.get(message.seq, 0) + 1
            if 0 < self.definition.max_deliver < attempt:
                continue
            self.attempts[message.seq] = attempt
            subscriber = self.subscribers[next(self._rr) % len(self.subscribers)]
            delivery = _MemoryDelivery(self, message, attempt)
            self.in_flight[message.seq] = None
            task = self.broker.spawn(subscriber.handler(delivery))
            self._arm(message, delivery, task)

    def _arm(
        self, message: _Message, delivery: _MemoryDelivery, task: asyncio.Future[None]
    ) -> None:
        if delivery.settled or message.seq not in self.in_flight:
            return
        self.in_flight[message.seq] = asyncio.get_running_loop().call_later(
            self.definition.ack_wait, self._expire, message, delivery, task
        )

    def _expire(
        self, message: _Message, delivery: _MemoryDelivery, task: asyncio.Future[None]
    ) -> None:
        # As NatsTransport's in-progress heartbeats: a handler still running keeps its
        # message; one that returned without settling it is redelivered.
        if task.done():
            self._redeliver(message, delivery)
        else:
            self._arm(message, delivery, task)

    def settle(self, message: _Message, delivery: _MemoryDelivery) -> bool:
        if delivery.settled or message.seq not in self.in_flight:
            return False
        delivery.settled = True
        timer = self.in_flight[message.seq]
        if timer is not None:
            timer.cancel()
        return True

    def done(self, message: _Message) -> None:
        self.in_flight.pop(message.seq, None)
        self.attempts.pop(message.seq, None)
        self.pump()

    def _redeliver(self, message: _Message, delivery: _MemoryDelivery | None = None) -> None:
        if delivery is not None:
            delivery.settled = True
        self.in_flight.pop(message.seq, None)
        self.queue.appendleft(message)
        self.pump()

    def later(self, message: _Message, delay: float) -> None:
        # Still counts as pending (as in JetStream) until redelivered.
        loop = asyncio.get_running_loop()
        self.in_flight[message.seq] = loop.call_later(delay, self._redeliver, message)


class _MemoryDelivery(Delivery):
    def __init__(self, consumer: _Consumer, message: _Message, attempt: int) -> None:
        self._consumer = consumer
        self._message = message
        self.body = message.body
        self.headers = dict(message.headers)
        self.attempt = attempt
        self.stream = consumer.definition.stream
        self.stream_seq = message.seq
        self.settled = False

    async def ack(self) -> None:
        if self._consumer.settle(self._message, self):
            self._consumer.done(self._message)

    async def term(self) -> None:
        await self.ack()

    async def nak(self, delay: float) -> None:
        if self._consumer.settle(self._message, self):
            self._consumer.later(self._message, delay)


class MemoryBroker:
    """The shared in-memory "server"; give every Events instance a transport onto it."""

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.consumers: dict[tuple[str, str], _Consumer] = {}
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def transport(self) -> MemoryTransport:
        return MemoryTransport(self)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add_stream(self, name: str, subjects: list[str]) -> None:
        self.streams.setdefault(name, _Stream(name, subjects))

    def store(self, message: Outgoing) -> None:
        for stream in self.streams.values():
            if any(subject_matches(p, message.subject) for p in stream.subjects):
                if message.msg_id in stream.seen_ids:
                    return
                stream.seen_ids.add(message.msg_id)
                stored = _Message(next(self._seq), message.subject, message.headers, message.body)
                stream.messages[stored.seq] = stored
                for (name, _), consumer in list(self.consumers.items()):
                    if name == stream.name:
                        consumer.offer(stored)
                return
        raise LookupError(f"no stream stores subject {message.subject!r}")


class MemoryTransport(Transport):
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD
        self._open = False
        self._subscriptions: list[tuple[_Consumer, _Subscriber]] = []

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        for consumer, subscriber in self._subscriptions:
            if subscriber in consumer.subscribers:
                consumer.subscribers.remove(subscriber)
        self._subscriptions.clear()

    async def connected(self) -> bool:
        return self._open

    async def ensure(
        self, system: str, topics: list[TopicConfig], consumers: list[ConsumerDef]
    ) -> None:
        for topic in topics:
            self.broker.add_stream(stream_name(system, topic.name), stream_subjects(system, topic))
        self.broker.add_stream(dlq_stream(system), [f"{system}._dlq.>"])
        self.broker.add_stream(replay_stream(system), [f"{system}._replay.>"])
        for definition in consumers:
            key = (definition.stream, definition.durable)
            if key not in self.broker.consumers:
                consumer = _Consumer(self.broker, definition)
                self.broker.consumers[key] = consumer
                for message in self.broker.streams[definition.stream].messages.values():
                    consumer.offer(message)

    def max_payload(self) -> int | None:
        return self.max_payload_bytes

    async def publish(self, message: Outgoing) -> asyncio.Future[Any]:
        self.check_size(message)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            self.broker.store(message)
            future.set_result(None)
        except LookupError as exc:
            future.set_exception(exc)
        return future

    async def subscribe(self, consumer: ConsumerDef, handler: Handler, *, ordered: bool) -> None:
        state = self.broker.consumers[(consumer.stream, consumer.durable)]

        async def guarded(delivery: Delivery) -> None:
            if self._open:
                await handler(delivery)

        subscriber = _Subscriber(guarded, ordered)
        state.subscribers.append(subscriber)
        self._subscriptions.append((state, subscriber))
        state.pump()

    async def dlq_add(self, system: str, letter: DeadLetter, *, msg_id: str) -> None:
        body = json.dumps(letter.to_json_dict()).encode()
        subject = f"{system}._dlq.{letter.service}.{letter.topic}"
        await (await self.publish(Outgoing(subject, {}, body, msg_id)))

    async def dlq_list(self, system: str) -> list[DeadLetter]:
        stream = self.broker.streams.get(dlq_stream(system))
        if stream is None:
            return []
        return [
            DeadLetter.from_json_dict(seq, json.loads(m.body))
            for seq, m in sorted(stream.messages.items())
        ]

    async def dlq_delete(self, system: str, seq: int) -> bool:
        stream = self.broker.streams.get(dlq_stream(system))
        return stream is not None and stream.messages.pop(seq, None) is not None
