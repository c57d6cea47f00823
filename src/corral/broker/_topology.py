"""EventsPlan -> the SDK's Topology (stream and consumer names the SDK agrees with). Pure."""

from __future__ import annotations

from corral.plan import EventsPlan, TopicPlan
from corral.sdk.events import TopicConfig, Topology


def topic_config(topic: TopicPlan) -> TopicConfig:
    return TopicConfig(
        name=topic.name,
        retention=topic.retention,
        max_age=topic.max_age,
        max_bytes=topic.max_bytes,
        max_msgs=topic.max_msgs,
        replicas=topic.replicas,
        duplicate_window=topic.duplicate_window,
        partitions=topic.partitions,
        max_deliveries=topic.delivery.max_deliveries,
        backoff=topic.delivery.backoff,
        ack_wait=topic.delivery.ack_wait,
        producers=topic.producers,
        consumers=topic.consumers,
        payload=topic.payload,
    )


def topology(events: EventsPlan, service: str | None = None) -> Topology:
    """The whole system's topology, or only the topics ``service`` produces or consumes."""
    topics = events.topics if service is None else events.topics_of(service)
    return Topology(system=events.system, topics={t.name: topic_config(t) for t in topics})
