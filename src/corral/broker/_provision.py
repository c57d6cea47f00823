"""Streams and durable consumers from the plan: idempotent, with drift reported.

Run on every ``corral up``: a missing stream or consumer is created; an existing one
whose settings differ from the manifest is updated where JetStream allows it (limits,
subjects, duplicate window, ack wait, max deliver, max ack pending), and everything else
(retention, storage, a consumer's filter or delivery group) is reported as drift that
only deleting and recreating would fix. Nothing is ever deleted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from corral.broker._topology import topic_config
from corral.plan import EventsPlan
from corral.sdk.events.wire import (
    consumer_config,
    consumers_for,
    replay_consumer,
    stream_config,
    system_stream_configs,
)

_STREAM_MUTABLE = (
    "subjects",
    "max_age",
    "max_bytes",
    "max_msgs",
    "duplicate_window",
    "num_replicas",
)
_STREAM_FIXED = ("retention", "storage")
_CONSUMER_MUTABLE = ("ack_wait", "max_deliver", "max_ack_pending")
_CONSUMER_FIXED = ("filter_subject", "deliver_subject", "deliver_group", "ack_policy")


@dataclass(frozen=True)
class Drift:
    """A setting that differs between the manifest and the broker."""

    stream: str
    consumer: str | None
    field: str
    manifest: Any
    broker: Any
    updated: bool
    """True when provisioning changed the broker to match; False: needs a recreate."""

    def __str__(self) -> str:
        where = self.stream + (f"/{self.consumer}" if self.consumer else "")
        action = "updated" if self.updated else "NOT updated (delete and recreate to apply)"
        return (
            f"{where}: {self.field} is {self.broker!r}, manifest says {self.manifest!r}; {action}"
        )


@dataclass
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "drift": [str(d) for d in self.drift],
        }


def _norm(value: Any) -> Any:
    if isinstance(value, js_api.RetentionPolicy | js_api.StorageType | js_api.AckPolicy):
        return value.value
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return sorted(value)
    if value is None:
        return None
    return value


def _same(want: Any, have: Any) -> bool:
    if want is None:
        return True  # the manifest does not say: the server's default stands
    want, have = _norm(want), _norm(have)
    if isinstance(want, float) and isinstance(have, float | int):
        return math.isclose(want, float(have), abs_tol=0.001)
    if want in (0, -1, None) and have in (0, -1, None, 0.0):
        return True  # "unlimited" spelled differently
    return bool(want == have)


async def provision(js: JetStreamContext, events: EventsPlan) -> ProvisionReport:
    """Make the broker match the plan's streams and consumers (see module docstring)."""
    report = ProvisionReport()
    system = events.system
    streams = [stream_config(system, topic_config(t)) for t in events.topics]
    streams += system_stream_configs(system)
    for want in streams:
        await _stream(js, want, report)
    for topic in events.topics:
        config = topic_config(topic)
        for service in topic.consumers:
            for definition in consumers_for(system, service, config):
                await _consumer(js, definition.stream, consumer_config(definition), report)
    for service in sorted({s for t in events.topics for s in t.consumers}):
        definition = replay_consumer(system, service)
        await _consumer(js, definition.stream, consumer_config(definition), report)
    return report


async def _stream(js: JetStreamContext, want: js_api.StreamConfig, report: ProvisionReport) -> None:
    name = str(want.name)
    try:
        have = (await js.stream_info(name)).config
    except NotFoundError:
        await js.add_stream(want)
        report.created.append(name)
        return
    changes = _drift(want, have, report, (name, None), _STREAM_MUTABLE, _STREAM_FIXED)
    if changes:
        await js.update_stream(have.evolve(**changes))
        report.updated.append(name)
    else:
        report.unchanged.append(name)


async def _consumer(
    js: JetStreamContext, stream: str, want: js_api.ConsumerConfig, report: ProvisionReport
) -> None:
    durable = str(want.durable_name)
    label = f"{stream}/{durable}"
    try:
        have = (await js.consumer_info(stream, durable)).config
    except NotFoundError:
        await js.add_consumer(stream, want)
        report.created.append(label)
        return
    changes = _drift(want, have, report, (stream, durable), _CONSUMER_MUTABLE, _CONSUMER_FIXED)
    if changes:
        await js.add_consumer(stream, have.evolve(**changes))  # create-or-update
        report.updated.append(label)
    else:
        report.unchanged.append(label)


def _drift(
    want: Any,
    have: Any,
    report: ProvisionReport,
    where: tuple[str, str | None],
    mutable: tuple[str, ...],
    fixed: tuple[str, ...],
) -> dict[str, Any]:
    """Record every field of ``have`` that differs from ``want`` as drift on the stream (and
    consumer) ``where``; return the mutable ones, with their wanted values, for the update."""
    stream, consumer = where
    changes: dict[str, Any] = {}
    for key in (*mutable, *fixed):
        w, h = getattr(want, key), getattr(have, key)
        if not _same(w, h):
            report.drift.append(Drift(stream, consumer, key, _norm(w), _norm(h), key in mutable))
            if key in mutable:
                changes[key] = w
    return changes
