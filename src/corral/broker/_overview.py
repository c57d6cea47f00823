"""The event bus at a glance, for the dashboard: per topic its stream and each consuming
service's lag, plus the dead letters. Read from JetStream at the moment asked."""

from __future__ import annotations

import re
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from corral.broker._dlq import _summary
from corral.plan import EventsPlan
from corral.sdk.events import NatsTransport
from corral.sdk.events.wire import dlq_stream, stream_name

__all__ = ["bus_overview"]

_PARTITION = re.compile(r"-p\d+$")


async def _quiet(_: Exception) -> None:
    """Failures are reported once, by the exception the caller gets."""


async def bus_overview(
    bus: Client | str, events: EventsPlan, *, letters: int = 20
) -> dict[str, Any]:
    """``{"topics": [...], "dead_letters": n, "recent_dead_letters": [...]}``.

    ``bus``: a connected client (the broker addon keeps one for the dashboard's polls),
    or a URL to connect to for this one answer.

    A topic: its stream's message count, bytes and last sequence, who produces it, and
    one row per consumer (a partitioned topic has one per partition) with ``pending``
    (published, not yet delivered: the lag), ``ack_pending`` (delivered, not yet
    acknowledged) and ``redelivered``. Raises ``OSError``/``nats`` errors when the bus
    cannot be reached."""
    if not isinstance(bus, str):
        return await _overview(bus, events, letters)
    nc = await nats.connect(
        bus, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, error_cb=_quiet
    )
    try:
        return await _overview(nc, events, letters)
    finally:
        await nc.close()


async def _overview(nc: Client, events: EventsPlan, letters: int) -> dict[str, Any]:
    js = nc.jetstream(timeout=2)
    topics = []
    for topic in events.topics:
        stream = stream_name(events.system, topic.name)
        row: dict[str, Any] = {
            "topic": topic.name,
            "stream": stream,
            "producers": list(topic.producers),
            "consumers": [],
            "provisioned": True,
        }
        try:
            info = await js.stream_info(stream)
            consumers = await js.consumers_info(stream)
        except NotFoundError:
            row.update(provisioned=False, messages=0, bytes=0, last_seq=0)
            topics.append(row)
            continue
        row.update(
            messages=info.state.messages, bytes=info.state.bytes, last_seq=info.state.last_seq
        )
        for consumer in sorted(consumers, key=lambda c: c.name or ""):
            name = consumer.name or ""
            row["consumers"].append(
                {
                    "consumer": name,
                    "service": _PARTITION.sub("", name),
                    "pending": consumer.num_pending or 0,
                    "ack_pending": consumer.num_ack_pending or 0,
                    "redelivered": consumer.num_redelivered or 0,
                }
            )
        topics.append(row)
    count, recent = await _recent_letters(nc, events.system, letters)
    return {"topics": topics, "dead_letters": count, "recent_dead_letters": recent}


async def _recent_letters(nc: Client, system: str, wanted: int) -> tuple[int, list[dict[str, Any]]]:
    """How many dead letters there are, and the newest ``wanted`` (newest first): read
    from the end of the stream, so a long dead-letter queue costs no more than a short."""
    transport = NatsTransport(client=nc)
    await transport.start()
    try:
        info = await transport.js.stream_info(dlq_stream(system))
    except NotFoundError:
        return 0, []
    state = info.state
    if not state.messages:
        # Empty (a fresh system, or every letter replayed): there is no sequence to read,
        # and NATS answers a read of sequence 0 with "bad request".
        return 0, []
    recent: list[dict[str, Any]] = []
    seq = state.last_seq
    while seq >= max(state.first_seq, 1) and len(recent) < wanted:
        letter = await transport.dlq_get(system, seq)
        if letter is not None:
            recent.append(_summary(seq, letter.to_json_dict()))
        seq -= 1
    return state.messages, recent
