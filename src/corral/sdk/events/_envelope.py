"""The CloudEvents-style envelope every event travels in, and the message headers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MSG_ID_HEADER = "Nats-Msg-Id"
"""JetStream de-duplicates on it; Corral sets it to the event id."""
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
TYPE_HEADER = "Corral-Type"
KEY_HEADER = "Corral-Key"


def new_event_id() -> str:
    """A time-ordered unique id (UUIDv7 layout: 48 bits of milliseconds, then random)."""
    millis = int(time.time() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (
        (millis << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


class Envelope(BaseModel):
    """What goes on the wire: CloudEvents 1.0 attributes plus Corral's own.

    ``data`` is the payload as JSON; handlers receive it validated into their model.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=new_event_id)
    source: str
    """The producing service and instance, ``/<service>/<instance>``."""
    type: str
    """The topic, e.g. ``ride.requested``."""
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    schemaversion: int = 1
    traceparent: str | None = None
    key: str | None = None
    """Ordering key (per-key ordered topics)."""
    data: Any = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)
