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

from corral.sdk.events._topology import ConsumerDef, TopicConfig


@dataclass(frozen=True)
class Outgoing:
    """One message to publish (the envelope already serialised)."""

    subject: str
    headers: dict[str, str]
    body: bytes
    msg_id: str


class Delivery(abc.ABC):
    """One delivery attempt of a message to this consumer."""

    body: bytes
    headers: dict[str, str]
    attempt: int
    """1 on the first delivery."""
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
        """Send; the returned future resolves when the broker stored the message."""

    @abc.abstractmethod
    async def subscribe(self, consumer: ConsumerDef, handler: Handler, *, ordered: bool) -> None:
        """Deliver the consumer's messages to ``handler``; replicas binding the same
        durable compete. ``ordered``: one message at a time, in order."""

    # -- dead letters ---------------------------------------------------------------
    @abc.abstractmethod
    async def dlq_add(self, system: str, letter: DeadLetter) -> None: ...

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
