"""JetStream atomic batch publishing (nats-server 2.12+, ADR-50), for the outbox relay.

With ``sync_interval: always`` the server syncs to disk before every acknowledgement, so
one event per acknowledgement caps the relay near 4k events/s here (bench/events.py).
An atomic batch is stored, synced and acknowledged as one: the first message starts it
(a request: the server answers empty, or refuses at once), the middle ones are plain
publishes, the last carries ``Nats-Batch-Commit`` and gets the one acknowledgement.

All or nothing, and the server refuses a whole batch that contains an event id it has
already stored ("atomic publish batch contains duplicate message id"). That is exactly
what a relay killed between the broker's acknowledgement and marking its rows sent
meets on its next round; ``publish_atomic`` then reports the batch not taken and the
relay publishes those rows one by one, where de-duplication drops the stored copies.

nats-py has no API for this (only the stream's ``allow_atomic``); the protocol is three
headers. This module holds its limit and how the server's replies read;
:mod:`corral.sdk.events._batch_wire` sends a batch.
"""

from __future__ import annotations

import json
import logging

__all__ = ["MAX_BATCH", "accepted"]

MAX_BATCH = 1000
"""The server's limit of messages in one atomic batch."""

log = logging.getLogger("corral.events")


def accepted(data: bytes, batch: str, count: int | None) -> bool:
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
