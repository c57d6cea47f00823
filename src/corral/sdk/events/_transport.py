"""The I/O boundary of events: a transport moves bytes; :class:`Events` holds the logic.

Two implementations share one abstract test suite: :class:`NatsTransport` (JetStream)
and :class:`MemoryTransport` (an in-process hub for unit tests of handlers).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from corral.sdk.events._errors import PayloadTooLargeError
from corral.sdk.events._topology import ConsumerDef, TopicConfig


@dataclass(frozen=True)
class Outgoing:
    """One message to publish (the envelope already serialised)."""

    subject: str
    headers: dict[str, str]
    body: bytes
    msg_id: str

    @property
    def size(self) -> int:
        """Bytes the broker counts against its max_payload: body and the header block
        (``NATS/1.0``, one ``key: value`` line per header, the ``Nats-Msg-Id`` too)."""
        headers = {**self.headers, "Nats-Msg-Id": self.msg_id}
        return len(self.body) + 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())


class Delivery(abc.ABC):
    """One delivery attempt of a message to this consumer."""

    body: bytes
    headers: dict[str, str]
    attempt: int
    """1 on the first delivery."""
    stream: str
    """The stream the message is stored in (a topic's, or the system's replay queue)."""
    stream_seq: int

    @abc.abstractmethod
    async def ack(self) -> None: ...

    @abc.abstractmethod
    async def nak(self, delay: float) -> None: ...

    @abc.abstractmethod
    async def term(self) -> None: ...


@dataclass
class DeadLetter:
    """An event that exhausted its deliveries, with why and how it was tried."""

    seq: int
    service: str
    topic: str
    event_id: str
    error: str
    deliveries: int
    dead_at: float
    history: list[dict[str, Any]] = field(default_factory=list)
    event: dict[str, Any] = field(default_factory=dict)
    """The original envelope."""
    headers: dict[str, str] = field(default_factory=dict)
    """The original message headers (trace context)."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "topic": self.topic,
            "event_id": self.event_id,
            "error": self.error,
            "deliveries": self.deliveries,
            "dead_at": self.dead_at,
            "history": self.history,
            "event": self.event,
            "headers": self.headers,
        }

    @classmethod
    def from_json_dict(cls, seq: int, data: dict[str, Any]) -> DeadLetter:
        return cls(
            seq=seq, **{k: data[k] for k in cls.__dataclass_fields__ if k != "seq" and k in data}
        )


Handler = Callable[[Delivery], Coroutine[Any, Any, None]]


class Transport(abc.ABC):
    """Moves messages; knows nothing of payloads, handlers, retries or tracing."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def connected(self) -> bool: ...

    @abc.abstractmethod
    async def ensure(
        self, system: str, topics: list[TopicConfig], consumers: list[ConsumerDef]
    ) -> None:
        """Create the streams and consumers that are missing (never changes existing ones)."""

    @abc.abstractmethod
    async def publish(self, message: Outgoing) -> asyncio.Future[Any]:
        """Send; the returned future resolves when the broker stored the message.
        Raises :class:`PayloadTooLargeError` at once for a message that can never fit."""

    async def publish_atomic(self, messages: list[Outgoing], *, ack_timeout: float) -> bool:
        """Store ``messages`` (one stream's) as one atomic batch if the broker can: True
        when all were acknowledged; False when not taken (none, or all, may be stored:
        the caller then publishes them one by one, de-duplicated by id)."""
        return False

    def max_payload(self) -> int | None:
        """The largest message the broker accepts (None: unknown or unlimited)."""
        return None

    def check_size(self, message: Outgoing) -> None:
        """Raise :class:`PayloadTooLargeError` if ``message`` exceeds :meth:`max_payload`."""
        limit = self.max_payload()
        if limit is not None and message.size > limit:
            raise PayloadTooLargeError(
                f"event {message.msg_id} on {message.subject!r} is {message.size} bytes "
                f"with headers; the broker accepts at most {limit} (max_payload)"
            )

    @abc.abstractmethod
    async def subscribe(self, consumer: ConsumerDef, handler: Handler, *, ordered: bool) -> None:
        """Deliver the consumer's messages to ``handler``; replicas binding the same
        durable compete. ``ordered``: one message at a time, in order."""

    # -- dead letters ---------------------------------------------------------------
    @abc.abstractmethod
    async def dlq_add(self, system: str, letter: DeadLetter, *, msg_id: str) -> None:
        """Store a dead letter; a second one with the same ``msg_id`` (within the
        stream's duplicate window) is dropped, as JetStream does."""

    @abc.abstractmethod
    async def dlq_list(self, system: str) -> list[DeadLetter]: ...

    @abc.abstractmethod
    async def dlq_delete(self, system: str, seq: int) -> bool: ...

    async def dlq_get(self, system: str, seq: int) -> DeadLetter | None:
        for letter in await self.dlq_list(system):
            if letter.seq == seq:
                return letter
        return None

    async def dlq_purge(self, system: str) -> int:
        count = 0
        for letter in await self.dlq_list(system):
            count += await self.dlq_delete(system, letter.seq)
        return count
