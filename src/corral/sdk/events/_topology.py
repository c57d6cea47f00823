"""Names and settings of streams and consumers, shared by the SDK and the broker.

One JetStream stream per topic (``<system>_<topic>``, subjects ``<system>.<topic>``, or
``<system>.<topic>.<n>`` over N partitions for per-key ordering); one durable push
consumer per consuming service (``<service>``, or ``<service>-p<n>`` per partition)
whose replicas share a queue group, so each event reaches one replica. Two system
streams: ``<system>_DLQ`` (dead letters) and ``<system>_REPLAY`` (dead letters sent back
to one service). The control plane passes a :class:`Topology` to each instance as JSON
in ``CORRAL_EVENTS``; without it the SDK uses defaults (standalone, tests).

Pure: no I/O.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

DLQ_SUFFIX = "DLQ"
REPLAY_SUFFIX = "REPLAY"


@dataclass(frozen=True)
class TopicConfig:
    """One topic's stream limits and its consumers' delivery policy."""

    name: str
    retention: str = "limits"
    max_age: float | None = None
    max_bytes: int | None = None
    max_msgs: int | None = None
    replicas: int = 1
    duplicate_window: float = 120.0
    partitions: int = 0
    max_deliveries: int = 5
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0)
    ack_wait: float = 30.0
    max_ack_pending: int = 1000
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    payload: str | None = None

    def delay(self, attempt: int) -> float:
        """Redelivery delay after failed attempt number ``attempt`` (1-based)."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(attempt, len(self.backoff)) - 1]


@dataclass(frozen=True)
class Topology:
    """The system's topics, as far as one service (or the broker) needs them."""

    system: str
    topics: dict[str, TopicConfig] = field(default_factory=dict)

    def topic(self, name: str) -> TopicConfig:
        """The topic's settings; defaults when the topology does not list it."""
        return self.topics.get(name) or TopicConfig(name=name)

    def with_topic(self, config: TopicConfig) -> Topology:
        return replace(self, topics={**self.topics, config.name: config})

    def to_json(self) -> str:
        return json.dumps(
            {
                "system": self.system,
                "topics": {k: asdict(v) for k, v in sorted(self.topics.items())},
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Topology:
        data: dict[str, Any] = json.loads(text)
        topics = {}
        for name, raw in data.get("topics", {}).items():
            for key in ("backoff", "producers", "consumers"):
                raw[key] = tuple(raw.get(key) or ())
            topics[name] = TopicConfig(**raw)
        return cls(system=data["system"], topics=topics)


# --- names ----------------------------------------------------------------------------


def stream_name(system: str, topic: str) -> str:
    return f"{system}_{topic.replace('.', '_')}"


def dlq_stream(system: str) -> str:
    return f"{system}_{DLQ_SUFFIX}"


def replay_stream(system: str) -> str:
    return f"{system}_{REPLAY_SUFFIX}"


def subject(system: str, topic: str, partition: int | None = None) -> str:
    base = f"{system}.{topic}"
    return base if partition is None else f"{base}.{partition}"


def stream_subjects(system: str, config: TopicConfig) -> list[str]:
    return [subject(system, config.name) + (".*" if config.partitions else "")]


def dlq_subject(system: str, service: str, topic: str) -> str:
    return f"{system}._dlq.{service}.{topic}"


def replay_subject(system: str, service: str, topic: str) -> str:
    return f"{system}._replay.{service}.{topic}"


def partition_of(key: str, partitions: int) -> int:
    """Stable partition of an ordering key (CRC-32, the same in every process)."""
    return zlib.crc32(key.encode()) % partitions


def durable_name(service: str, partition: int | None = None) -> str:
    return service if partition is None else f"{service}-p{partition}"


def deliver_subject(stream: str, durable: str) -> str:
    return f"_corral.deliver.{stream}.{durable}"


@dataclass(frozen=True)
class ConsumerDef:
    """One durable consumer a service binds to."""

    stream: str
    durable: str
    filter_subject: str
    deliver_subject: str
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    partition: int | None = None


def consumers_for(system: str, service: str, config: TopicConfig) -> list[ConsumerDef]:
    """The consumers ``service`` uses for ``config``; partitions get one each.

    ``max_deliver`` is one more than the manifest's max_deliveries: the SDK dead-letters
    an event itself after max_deliveries failures, and the extra delivery lets it do so
    even when the last attempt died with its process (ack wait expired).
    """
    stream = stream_name(system, config.name)
    parts: list[int | None] = list(range(config.partitions)) if config.partitions else [None]
    out = []
    for part in parts:
        durable = durable_name(service, part)
        out.append(
            ConsumerDef(
                stream=stream,
                durable=durable,
                filter_subject=subject(system, config.name, part),
                deliver_subject=deliver_subject(stream, durable),
                ack_wait=config.ack_wait,
                max_deliver=config.max_deliveries + 1,
                max_ack_pending=1 if part is not None else config.max_ack_pending,
                partition=part,
            )
        )
    return out


def replay_consumer(system: str, service: str) -> ConsumerDef:
    stream = replay_stream(system)
    return ConsumerDef(
        stream=stream,
        durable=service,
        filter_subject=f"{system}._replay.{service}.>",
        deliver_subject=deliver_subject(stream, service),
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=1000,
    )
