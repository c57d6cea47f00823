"""The CloudEvents-style envelope every event travels in, and the message headers."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

MSG_ID_HEADER = "Nats-Msg-Id"
"""JetStream de-duplicates on it; Corral sets it to the event id."""
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
TYPE_HEADER = "Corral-Type"
KEY_HEADER = "Corral-Key"


def new_event_id() -> str:
    """A time-ordered unique id (UUIDv7 layout: 48 bits of milliseconds, then random)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10)) & ((1 << 74) - 1)
    value = (
        (millis << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode_envelope(
    *,
    event_id: str,
    source: str,
    type: str,
    data: Any,
    traceparent: str | None = None,
    key: str | None = None,
) -> bytes:
    """The wire form of a new :class:`Envelope`, without building the model (publish is
    hot): the same JSON as ``Envelope(...).to_bytes()``; ``data`` must be JSON-able
    (payloads are dumped by pydantic first; anything else falls back to pydantic).
    """
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "schemaversion": 1,
    }
    if traceparent is not None:
        envelope["traceparent"] = traceparent
    if key is not None:
        envelope["key"] = key
    if data is not None:
        envelope["data"] = data
    return orjson.dumps(envelope, default=to_jsonable_python, option=orjson.OPT_UTC_Z)


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
