"""The ``events:`` section: topics (streams), their producers and consumers, delivery policy.

Example::

    events:
      url: nats://nats.internal:4222      # optional; default: an embedded nats-server
      delivery:                           # defaults for every topic's consumers
        max_deliveries: 5
        backoff: [1s, 5s, 30s]
        ack_wait: 30s
      topics:
        ride.requested:
          producers: [rides]
          consumers: [matching, tracking]
          payload: rides.events:RideRequested   # pydantic model, for the catalog
          retention: limits                     # limits | interest | workqueue
          max_age: 24h
          max_bytes: 1Gi                        # or max_msgs: 100000
          replicas: 1                           # > 1 only on a clustered server
          ordering: per-key                     # optional; see docs/events.md
          partitions: 4
          delivery: {max_deliveries: 3}

Every topic becomes one JetStream stream; every consuming service one durable consumer
on it (its replicas compete). Cross-references (unknown services, a work queue with two
consuming services) are checked by :func:`check_events`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, Field, model_validator

from corral.manifest._diagnostics import Diagnostic, KeyPath, shown
from corral.manifest._references import service_list_problems
from corral.manifest._source import SourceMap
from corral.manifest._types import STRICT, Duration, MemoryBytes, Name

_TOPIC = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$")
_PAYLOAD = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _check_topic(value: str) -> str:
    if len(value) > 100 or not _TOPIC.match(value):
        raise ValueError(
            f"invalid topic name {shown(value)}: use dot-separated tokens of lower-case letters, "
            "digits and '-', each starting with a letter (it becomes a NATS subject), "
            "e.g. ride.requested"
        )
    return value


TopicName = Annotated[str, AfterValidator(_check_topic)]


class Retention(StrEnum):
    LIMITS = "limits"
    """Keep events until max_age/max_bytes/max_msgs; every consuming service sees all."""
    INTEREST = "interest"
    """Drop an event once every consuming service has acknowledged it."""
    WORKQUEUE = "workqueue"
    """Drop an event once one consumer acknowledged it (a single consuming service)."""


class Ordering(StrEnum):
    NONE = "none"
    PER_KEY = "per-key"


class DeliverySpec(BaseModel):
    """How a consuming service receives a topic: retries, backoff, ack deadline."""

    model_config = STRICT

    max_deliveries: int | None = Field(
        default=None, ge=1, le=1000, description="Attempts before the dead-letter stream."
    )
    backoff: tuple[Duration, ...] | None = Field(
        default=None, description="Redelivery delays after each failed attempt."
    )
    ack_wait: Duration | None = Field(
        default=None, gt=0, description="Time a handler may take before redelivery."
    )


DEFAULT_MAX_DELIVERIES = 5
DEFAULT_BACKOFF: tuple[float, ...] = (1.0, 5.0, 30.0)
DEFAULT_ACK_WAIT = 30.0


class TopicSpec(BaseModel):
    """One topic: a JetStream stream, who writes to it and who reads it."""

    model_config = STRICT

    description: str | None = None
    producers: tuple[Name, ...] = ()
    consumers: tuple[Name, ...] = ()
    payload: str | None = Field(
        default=None, description="module:Class of the pydantic payload model."
    )
    retention: Retention = Retention.LIMITS
    max_age: Duration | None = Field(default=None, gt=0)
    max_bytes: MemoryBytes | None = Field(default=None, gt=0)
    max_msgs: int | None = Field(default=None, gt=0)
    replicas: int = Field(default=1, ge=1, le=5)
    duplicate_window: Duration = Field(
        default=120.0, gt=0, description="De-duplication window (Nats-Msg-Id)."
    )
    ordering: Ordering = Ordering.NONE
    partitions: int | None = Field(default=None, ge=1, le=64)
    delivery: DeliverySpec = DeliverySpec()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_bytes is not None and self.max_msgs is not None:
            raise ValueError("set max_bytes or max_msgs, not both")
        if self.partitions is not None and self.ordering is not Ordering.PER_KEY:
            raise ValueError("partitions only apply with ordering: per-key")
        if self.payload is not None and not _PAYLOAD.match(self.payload):
            raise ValueError(
                f"payload must be module:Class (a pydantic model), got {shown(self.payload)}"
            )
        return self


class EventsSpec(BaseModel):
    """The event bus: an external NATS URL or the embedded server, and the topics."""

    model_config = STRICT

    url: str | None = Field(
        default=None, description="External NATS URL; without it corral up embeds one."
    )
    delivery: DeliverySpec = DeliverySpec()
    topics: dict[TopicName, TopicSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _url(self) -> Self:
        if self.url is not None and not re.match(r"^(nats|tls|ws|wss)://", self.url):
            raise ValueError(f"events.url must be a nats:// URL, got {shown(self.url)}")
        return self


EVENT_PARTY_RULE = "event-party-not-a-service"
"""The lint rule a producer or consumer that is no service is (a manifest error first)."""


def _not_a_service(role: str, name: str) -> str:
    return f"{role} {shown(name)} is not a service"


def party_problems(
    topic: KeyPath, role: str, parties: Sequence[str], services: list[str], source: SourceMap
) -> list[Diagnostic]:
    """A topic's producers or consumers (``role``) are services of the system, each once."""
    return service_list_problems(
        (*topic, f"{role}s"),
        parties,
        services,
        source,
        unknown=partial(_not_a_service, role),
        rule=EVENT_PARTY_RULE,
    )


def check_events(
    events: EventsSpec | None, services: list[str], source: SourceMap
) -> list[Diagnostic]:
    """Cross-references of the events section (called from ``check_system``)."""
    if events is None:
        return []
    problems: list[Diagnostic] = []
    for topic, spec in sorted(events.topics.items()):
        base = ("events", "topics", topic)
        problems += party_problems(base, "producer", spec.producers, services, source)
        problems += party_problems(base, "consumer", spec.consumers, services, source)
        if spec.retention is Retention.WORKQUEUE and len(spec.consumers) > 1:
            problems.append(
                source.diagnostic(
                    (*base, "consumers"),
                    "a workqueue topic delivers each event to one consumer; "
                    f"{len(spec.consumers)} services consume it",
                    "use retention: limits or interest so every service gets every event",
                )
            )
        delivery = effective_delivery(events.delivery, spec.delivery)
        if len(delivery.backoff or ()) >= (delivery.max_deliveries or 0):
            problems.append(
                source.diagnostic(
                    (*base, "delivery"),
                    f"backoff has {len(delivery.backoff or ())} delays but max_deliveries is "
                    f"{delivery.max_deliveries}",
                    "JetStream needs more deliveries than backoff delays",
                )
            )
    return problems


def effective_delivery(defaults: DeliverySpec, topic: DeliverySpec) -> DeliverySpec:
    """The topic's delivery settings, falling back to the section's, then Corral's."""
    deliveries = topic.max_deliveries or defaults.max_deliveries or DEFAULT_MAX_DELIVERIES
    backoff = topic.backoff if topic.backoff is not None else defaults.backoff
    if backoff is None:  # Corral's default, cut to fit a small max_deliveries
        backoff = DEFAULT_BACKOFF[: max(deliveries - 1, 0)]
    return DeliverySpec(
        max_deliveries=deliveries,
        backoff=backoff,
        ack_wait=topic.ack_wait or defaults.ack_wait or DEFAULT_ACK_WAIT,
    )
