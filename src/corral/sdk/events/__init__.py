"""Typed asynchronous events over NATS JetStream (SDK side; no control-plane imports).

>>> events = Events.from_env(engine=engine)          # NATS_URL, CORRAL_EVENTS
>>> @events.subscribe("ride.requested")
... async def on_requested(event: RideRequested, session: AsyncSession) -> None:
...     session.add(Match(ride_id=event.ride_id))     # applied once (inbox)
>>> await events.start()
>>> await events.publish("ride.requested", RideRequested(ride_id="r1"))
>>> await events.publish("ride.requested", RideRequested(ride_id="r2"), session=session)

See docs/events.md for the guarantees.
"""

# The names load on first use (PEP 562): the control plane's broker addon and the CLI
# need the wire format, topology and replay, not the SQLAlchemy tables, the Events
# facade or settings, which an eager import here pulled into every process that touched
# any submodule (+0.5 s of CPU at each `corral up`).
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.sdk.events._envelope import Envelope, new_event_id
    from corral.sdk.events._errors import (
        EventSchemaError,
        EventsError,
        NotStartedError,
        PayloadTooLargeError,
        PublishError,
    )
    from corral.sdk.events._events import Events
    from corral.sdk.events._memory import MemoryBroker, MemoryTransport
    from corral.sdk.events._nats import NatsTransport
    from corral.sdk.events._replay import replay_dead_letter
    from corral.sdk.events._tables import inbox, outbox
    from corral.sdk.events._topology import TopicConfig, Topology
    from corral.sdk.events._transport import DeadLetter, Delivery, Outgoing, Transport

_WHERE = {
    "DeadLetter": "_transport",
    "Delivery": "_transport",
    "Envelope": "_envelope",
    "EventSchemaError": "_errors",
    "Events": "_events",
    "EventsError": "_errors",
    "MemoryBroker": "_memory",
    "MemoryTransport": "_memory",
    "NatsTransport": "_nats",
    "NotStartedError": "_errors",
    "Outgoing": "_transport",
    "PayloadTooLargeError": "_errors",
    "PublishError": "_errors",
    "TopicConfig": "_topology",
    "Topology": "_topology",
    "Transport": "_transport",
    "inbox": "_tables",
    "new_event_id": "_envelope",
    "outbox": "_tables",
    "replay_dead_letter": "_replay",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "DeadLetter",
    "Delivery",
    "Envelope",
    "EventSchemaError",
    "Events",
    "EventsError",
    "MemoryBroker",
    "MemoryTransport",
    "NatsTransport",
    "NotStartedError",
    "Outgoing",
    "PayloadTooLargeError",
    "PublishError",
    "TopicConfig",
    "Topology",
    "Transport",
    "inbox",
    "new_event_id",
    "outbox",
    "replay_dead_letter",
]
