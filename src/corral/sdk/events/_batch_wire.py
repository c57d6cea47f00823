"""An atomic batch's messages written to the connection as one buffer.

The protocol (ADR-50: a first request, plain publishes, a committing request) is
:mod:`corral.sdk.events._batch`'s. This module sends it more cheaply: the first and the
last message still go through nats-py's ``request`` (they need replies), but the middle
ones, up to 998 of them, are formatted here as ``HPUB`` commands and handed to the
connection in one piece.

Why by hand: nats-py's ``publish`` validates and re-encodes every header of every
message in Python (a regex per key, a strip and translate per value, a bytearray grown
piece by piece) and yields to the flusher each time: about 20 us of CPU per message
here, against about 2 us for the same bytes formatted below (measured in one run on this
machine; bench/events.py has the relay's figure). That was half of the relay's CPU per
event. The same checks are kept: a subject with whitespace or a header key that is not
an RFC 7230 token is refused (the batch is not sent), values are trimmed with CR/LF
turned into spaces, and a message bigger than the server's ``max_payload`` is not sent
in a batch.

It writes with ``Client._send_command``, nats-py's private append to its pending
buffer (the one ``publish`` uses, so ordering against the committing request and
buffering during a reconnect are nats-py's own). tests/sdk/events/test_batch_wire.py
fails if that method goes away in a nats-py upgrade.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence

from nats.aio.client import Client
from nats.errors import Error as NatsError

from corral.sdk.events._batch import MAX_BATCH, accepted
from corral.sdk.events._transport import Outgoing

__all__ = ["WireError", "header_block", "hpub", "publish_atomic"]

log = logging.getLogger("corral.events")

_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 7230 token characters, as nats-py checks header keys."""
_SUBJECT_INVALID = re.compile(r"[\s]")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_checked_keys: set[str] = set()
"""Header keys already validated (a handful in practice: Corral-Type, traceparent, ...);
at most :data:`_KEYS_KEPT` are remembered, the rest are checked every time."""
_KEYS_KEPT = 256


class WireError(ValueError):
    """A subject or header that would break the protocol's framing."""


def header_block(headers: Mapping[str, str]) -> str:
    """``key: value`` lines (each ending in CRLF) for ``headers``, checked as nats-py
    checks them: an invalid key raises :class:`WireError`; values are trimmed, CR/LF
    become spaces."""
    lines = []
    for key, value in headers.items():
        if key not in _checked_keys:
            if not _KEY.fullmatch(key):
                raise WireError(f"invalid header key {key!r}")
            if len(_checked_keys) < _KEYS_KEPT:
                _checked_keys.add(key)
        value = value.strip()
        if "\r" in value or "\n" in value:
            value = value.translate(_NEWLINES)
        lines.append(f"{key}: {value}\r\n")
    return "".join(lines)


def hpub(subject: str, headers: str, body: bytes, *, limit: int = 0) -> bytes:
    """One ``HPUB`` command without a reply subject: ``headers`` is a
    :func:`header_block` (the ``NATS/1.0`` line and the blank line are added here).
    :class:`WireError` for a subject with whitespace, or headers and body bigger than
    ``limit`` (the server's ``max_payload``; 0: unchecked)."""
    if not subject or _SUBJECT_INVALID.search(subject):
        raise WireError(f"invalid subject {subject!r}")
    head = f"NATS/1.0\r\n{headers}\r\n".encode()
    size = len(head) + len(body)
    if limit and size > limit:
        raise WireError(f"{size} bytes on {subject!r}: more than max_payload {limit}")
    return b"HPUB %b %d %d\r\n%b%b\r\n" % (subject.encode(), len(head), size, head, body)


async def publish_atomic(
    client: Client, messages: Sequence[Outgoing], *, ack_timeout: float
) -> bool:
    """Store ``messages`` (one stream's, at most :data:`MAX_BATCH`) as one atomic batch,
    each with ``Nats-Msg-Id`` = its event id.

    True when the server acknowledged all of them stored; False when it did not (refused,
    timed out, not connected, a message too big for a batch or with an invalid subject
    or header): then none of them, or all (an acknowledgement lost), may be stored, and
    the caller publishes them one by one with their ids, which settles either case.
    Raises nothing but cancellation.
    """
    count = len(messages)
    if not count or count > MAX_BATCH or not client.is_connected:
        return False
    batch = uuid.uuid4().hex
    limit = client.max_payload
    try:
        # Formatted (and checked) before anything is sent: a refused message must not
        # leave a started batch behind.
        middle = b"".join(
            hpub(
                m.subject,
                f"{header_block(m.headers)}Nats-Msg-Id: {m.msg_id}\r\n"
                f"Nats-Batch-Id: {batch}\r\nNats-Batch-Sequence: {sequence}\r\n",
                m.body,
                limit=limit,
            )
            for sequence, m in enumerate(messages[1:-1], 2)
        )
        ends = [(1, messages[0])] if count == 1 else [(1, messages[0]), (count, messages[-1])]
        requests = [_request(m, batch, sequence, sequence == count, limit) for sequence, m in ends]
        subject, body, headers = requests[0]
        reply = await client.request(subject, body, timeout=ack_timeout, headers=headers)
        if not accepted(reply.data, batch, 1 if count == 1 else None):
            return False
        if count == 1:
            return True
        if middle:
            # nats-py's private append (see the module docstring): after the first
            # request, before the committing one, in the connection's order.
            await client._send_command(middle)
        subject, body, headers = requests[1]
        reply = await client.request(subject, body, timeout=ack_timeout, headers=headers)
        return accepted(reply.data, batch, count)
    except (NatsError, TimeoutError, OSError, WireError) as exc:
        log.debug("atomic batch %s not acknowledged: %s", batch, exc)
        return False


def _request(
    message: Outgoing, batch: str, sequence: int, commit: bool, limit: int
) -> tuple[str, bytes, dict[str, str]]:
    """The first or the last message, for nats-py's ``request`` (``subject, payload,
    headers=``): its batch headers added, its size checked as :func:`hpub` does."""
    batch_headers = {
        **message.headers,
        "Nats-Msg-Id": message.msg_id,
        "Nats-Batch-Id": batch,
        "Nats-Batch-Sequence": str(sequence),
    }
    if commit:
        batch_headers["Nats-Batch-Commit"] = "1"
    hpub(message.subject, header_block(batch_headers), message.body, limit=limit)  # checks
    return message.subject, message.body, batch_headers
