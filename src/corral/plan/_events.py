"""Resolved ``events:`` section (pure). See corral.manifest._events.

The plan keeps the logical view (topics, their limits, who produces and consumes them,
effective delivery settings); the broker turns it into stream and consumer names with
the SDK's naming rules, so both sides agree on one set of names.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.manifest import Manifest, Ordering, effective_delivery


@dataclass(frozen=True)
class DeliveryPlan:
    max_deliveries: int
    backoff: tuple[float, ...]
    ack_wait: float


@dataclass(frozen=True)
class TopicPlan:
    name: str
    retention: str
    """limits | interest | workqueue"""
    max_age: float | None
    max_bytes: int | None
    max_msgs: int | None
    replicas: int
    duplicate_window: float
    partitions: int
    """0: no ordering; N: per-key ordering over N partitions."""
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    delivery: DeliveryPlan
    payload: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class EventsPlan:
    system: str
    url: str | None
    """External NATS URL from the manifest; None means the embedded server."""
    topics: tuple[TopicPlan, ...]
    """Sorted by name."""

    def topic(self, name: str) -> TopicPlan:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(name)

    def topics_of(self, service: str) -> tuple[TopicPlan, ...]:
        """Topics ``service`` produces or consumes."""
        return tuple(t for t in self.topics if service in t.producers or service in t.consumers)


DEFAULT_PARTITIONS = 4


def resolve_events(manifest: Manifest) -> EventsPlan | None:
    """The resolved section, or None when the manifest has none."""
    spec = manifest.spec.events
    if spec is None:
        return None
    topics = []
    for name, topic in sorted(spec.topics.items()):
        delivery = effective_delivery(spec.delivery, topic.delivery)
        assert delivery.max_deliveries is not None
        assert delivery.ack_wait is not None
        partitions = 0
        if topic.ordering is Ordering.PER_KEY:
            partitions = topic.partitions or DEFAULT_PARTITIONS
        topics.append(
            TopicPlan(
                name=name,
                retention=topic.retention.value,
                max_age=topic.max_age,
                max_bytes=topic.max_bytes,
                max_msgs=topic.max_msgs,
                replicas=topic.replicas,
                duplicate_window=topic.duplicate_window,
                partitions=partitions,
                producers=tuple(sorted(topic.producers)),
                consumers=tuple(sorted(topic.consumers)),
                delivery=DeliveryPlan(
                    max_deliveries=delivery.max_deliveries,
                    backoff=tuple(delivery.backoff or ()),
                    ack_wait=delivery.ack_wait,
                ),
                payload=topic.payload,
                description=topic.description,
            )
        )
    return EventsPlan(system=manifest.spec.name, url=spec.url, topics=tuple(topics))
