"""Sending a dead letter back to the one service that failed it."""

from __future__ import annotations

import asyncio
import json

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from corral.sdk.events import _tracing
from corral.sdk.events._envelope import TYPE_HEADER
from corral.sdk.events._topology import replay_subject
from corral.sdk.events._transport import Outgoing, Transport

REPLAY_TIMEOUT = 10.0
"""Seconds the broker has to store the replayed event."""


async def replay_dead_letter(
    transport: Transport, system: str, seq: int, *, tracer: trace.Tracer | None = None
) -> bool:
    """Republish a dead letter to its service's replay queue, then delete it.

    The replay span is a child of the original producer span, and the consumer's span
    a child of the replay span: one trace from first publish to the replayed handling.
    """
    letter = await transport.dlq_get(system, seq)
    if letter is None:
        return False
    tracer = tracer or _tracing.get_tracer(None)
    with tracer.start_as_current_span(
        f"{letter.topic} replay",
        context=_tracing.extract(letter.headers),
        kind=SpanKind.PRODUCER,
        attributes={
            _tracing.SYSTEM_ATTR: "nats",
            _tracing.DESTINATION_ATTR: letter.topic,
            _tracing.MESSAGE_ID_ATTR: letter.event_id,
            "corral.dead_letter.seq": seq,
        },
    ):
        headers: dict[str, str] = {TYPE_HEADER: letter.topic}
        _tracing.inject(headers)
        event_data = dict(letter.event)
        event_data["traceparent"] = headers.get(_tracing.TRACEPARENT)
        message = Outgoing(
            replay_subject(system, letter.service, letter.topic),
            headers,
            json.dumps(event_data).encode(),
            f"replay:{seq}:{letter.event_id}",
        )
        await asyncio.wait_for(await transport.publish(message), REPLAY_TIMEOUT)
    await transport.dlq_delete(system, seq)
    return True
