"""JetStream atomic batch publishing (nats-server 2.12+, ADR-50), for the outbox relay.

With ``sync_interval: always`` the server syncs to disk before every acknowledgement, so
one event per acknowledgement caps the relay near 4k events/s here (bench/events.py).
An atomic batch is stored, synced and acknowledged as one: the first message starts it
(a request: the server answers empty, or refuses at once), the middle ones are plain
publishes, the last carries ``Nats-Batch-Commit`` and gets the one acknowledgement.

All or nothing, and the server refuses a whole batch that contains an event id it has
already stored ("atomic publish batch contains duplicate message id"). That is exactly
what a relay killed between the broker's acknowledgement and marking its rows sent
meets on its next round; :func:`publish_atomic` then reports the batch not taken and the
relay publishes those rows one by one, where de-duplication drops the stored copies.

nats-py has no API for this (only the stream's ``allow_atomic``); the protocol is three
headers, written here.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence

from nats.aio.client import Client
from nats.errors import Error as NatsError

from corral.sdk.events._transport import Outgoing

__all__ = ["BATCH_HEADER_BYTES", "MAX_BATCH", "publish_atomic"]

MAX_BATCH = 1000
"""The server's limit of messages in one atomic batch."""

BATCH_HEADER_BYTES = 96
"""What the batch headers add to a message at most (id, sequence, commit)."""

log = logging.getLogger("corral.events")


async def publish_atomic(
    client: Client, messages: Sequence[Outgoing], *, ack_timeout: float
) -> bool:
    """Store ``messages`` (one stream's, at most :data:`MAX_BATCH`) as one atomic batch.

    True when the server acknowledged all of them stored; False when it refused the batch
    (duplicates, atomic publishing not allowed on the stream, a limit) or the connection
    failed: then none of them may be stored, or all (an acknowledgement lost), and the
    caller publishes them one by one with their ids, which settles either case. Raises
    nothing but cancellation.
    """
    if not messages or len(messages) > MAX_BATCH:
        return False
    batch = uuid.uuid4().hex
    last = len(messages)
    try:
        for index, message in enumerate(messages, 1):
            headers = {
                **message.headers,
                "Nats-Msg-Id": message.msg_id,
                "Nats-Batch-Id": batch,
                "Nats-Batch-Sequence": str(index),
            }
            if index == last:
                headers["Nats-Batch-Commit"] = "1"
            if index in (1, last):
                reply = await client.request(
                    message.subject, message.body, timeout=ack_timeout, headers=headers
                )
                if not _accepted(reply.data, batch, last if index == last else None):
                    return False
            else:
                await client.publish(message.subject, message.body, headers=headers)
    except (NatsError, TimeoutError, OSError) as exc:
        log.debug("atomic batch %s not acknowledged: %s", batch, exc)
        return False
    return True


def _accepted(data: bytes, batch: str, count: int | None) -> bool:
    """The server's answer: empty (a batch started), or the commit's acknowledgement."""
    if not data:
        return count is None
    try:
        ack = json.loads(data)
    except ValueError:
        return False
    if "error" in ack:
        log.debug("atomic batch %s refused: %s", batch, ack["error"].get("description"))
        return False
    return count is not None and ack.get("batch") == batch and ack.get("count") == count
