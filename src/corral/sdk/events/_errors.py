"""Errors of corral.sdk.events::

EventsError
├── EventSchemaError   (also ValueError) payload does not match the topic's model
├── PublishError       the broker did not store the event in time
│   └── PayloadTooLargeError  (also ValueError) bigger than the broker's max_payload
└── NotStartedError    publish before ``await events.start()``
"""

from __future__ import annotations


class EventsError(Exception):
    """Base of every error raised by corral.sdk.events."""


class EventSchemaError(EventsError, ValueError):
    """A published payload does not match the topic's declared model (development)."""


class PublishError(EventsError):
    """The broker did not acknowledge the event."""


class PayloadTooLargeError(PublishError, ValueError):
    """The event (envelope and headers) is bigger than the broker accepts in one message:
    publishing it can never succeed."""


class NotStartedError(EventsError):
    """The events component has not been started (or was stopped)."""
