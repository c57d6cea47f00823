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
