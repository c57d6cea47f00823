"""Dead-letter operations for ``corral events dlq list|show|replay|purge``.

Plain async functions taking a NATS URL and the system name; the CLI formats results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats

from corral.broker._credentials import without_credentials
from corral.broker._server import BrokerError
from corral.sdk.events import NatsTransport, replay_dead_letter


async def _quiet(_: Exception) -> None:
    """The failure is reported once, as a BrokerError."""


@asynccontextmanager
async def _transport(url: str) -> AsyncIterator[NatsTransport]:
    """A transport on a connection of its own that fails at once when the bus cannot
    be reached or refuses it (the SDK's transport would retry forever)."""
    try:
        nc = await nats.connect(
            url,
            name="corral-cli",
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=_quiet,
        )
    except Exception as exc:
        where = without_credentials(url)
        if "Authorization Violation" in str(exc):
            raise BrokerError(
                f"NATS at {where} refused the connection: it needs the system's credentials "
                "(corral.broker.control_url(<state directory>) gives the control plane's URL)"
            ) from exc
        raise BrokerError(f"cannot reach NATS at {where}: {exc}") from exc
    transport = NatsTransport(client=nc)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()
        await nc.close()


def _summary(seq: int, letter: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": seq,
        "service": letter["service"],
        "topic": letter["topic"],
        "event_id": letter["event_id"],
        "error": letter["error"],
        "deliveries": letter["deliveries"],
        "dead_at": letter["dead_at"],
    }


async def dlq_list(url: str, system: str) -> list[dict[str, Any]]:
    """One summary per dead letter (oldest first)."""
    async with _transport(url) as transport:
        return [_summary(d.seq, d.to_json_dict()) for d in await transport.dlq_list(system)]


async def dlq_show(url: str, system: str, seq: int) -> dict[str, Any] | None:
    """The whole dead letter: event, error, delivery history, headers."""
    async with _transport(url) as transport:
        letter = await transport.dlq_get(system, seq)
        return None if letter is None else {"seq": seq, **letter.to_json_dict()}


async def dlq_replay(url: str, system: str, seq: int | None = None) -> list[int]:
    """Send one dead letter (or all when ``seq`` is None) back to the failing service."""
    async with _transport(url) as transport:
        seqs = [seq] if seq is not None else [d.seq for d in await transport.dlq_list(system)]
        return [s for s in seqs if await replay_dead_letter(transport, system, s)]


async def dlq_purge(url: str, system: str) -> int:
    """Delete every dead letter; returns how many there were."""
    async with _transport(url) as transport:
        return await transport.dlq_purge(system)
