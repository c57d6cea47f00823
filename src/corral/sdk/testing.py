"""Test helpers shipped with the SDK.

``serve_in_process`` runs a service's lifespan in the test's event loop against a fresh
SQLite file and yields an ``httpx.AsyncClient`` that talks to it over ASGI; ``capture_logs``
collects the JSON lines the service would print (after redaction); ``metric`` reads one
sample from the service's own registry::

    async def test_hello() -> None:
        with capture_logs() as logs:
            async with serve_in_process(svc) as client:
                response = await client.get("/hello/ada")
        assert response.json() == {"message": "hello ada"}
        assert metric(svc, "http_requests_total", route="/hello/{name}", method="GET",
                      status="200") == 1
        assert logs[-2]["event"] == "request"

``inject_event_faults`` breaks an :class:`~corral.sdk.events.Events` on purpose (a crash at
an exact point of the outbox path, lost acknowledgements), for tests of what survives.

``TokenIssuer`` signs tokens the service verifies as it would the gateway's provider's
(``serve_in_process(svc, env=issuer.env())``, then ``headers=issuer.headers("user-1")``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from corral import contract
from corral.sdk._logging import WRITER
from corral.sdk._service import Service
from corral.sdk.identity._testing import TokenIssuer

if TYPE_CHECKING:
    from corral.sdk.events import Events

__all__ = [
    "TokenIssuer",
    "capture_logs",
    "inject_event_faults",
    "metric",
    "patched_env",
    "serve_in_process",
]


@contextmanager
def patched_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, with ``None``, unset) environment variables, restoring them afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@asynccontextmanager
async def serve_in_process(
    service: Service[Any],
    *,
    env: Mapping[str, str | None] | None = None,
    database_url: str | None = None,
    base_url: str = "http://testserver",
) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``service`` (lifespan included) and yield a client bound to it.

    Without ``database_url`` a database service gets a new SQLite file in a temporary
    directory, removed afterwards. ``env`` is applied to ``os.environ`` for the duration
    (the service's settings are read from it), so do not run two of these concurrently
    with conflicting values.
    """
    with tempfile.TemporaryDirectory(prefix=f"corral-{service.name}-") as tmp:
        values: dict[str, str | None] = {contract.SERVICE: service.name}
        if service.uses_database:
            values[contract.DATABASE_URL] = database_url or (
                "sqlite+aiosqlite:///" + str(Path(tmp) / f"{service.name}.db")
            )
        values.update(env or {})
        with patched_env(values):
            service.reset_settings()
            async with service.app.router.lifespan_context(service.app):
                transport = httpx.ASGITransport(app=service.app)
                async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                    yield client
        service.reset_settings()
        # Log lines leave at the end of a loop pass: end this one, so a caller reading
        # stdout next (capsys) finds the lines of the shutdown too.
        await asyncio.sleep(0)


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Collect every log line written while inside, parsed from JSON (redaction applied).

    Lines that are not JSON (``CORRAL_LOG_FORMAT=console``) are kept as ``{"line": ...}``.
    """
    captured: list[dict[str, Any]] = []

    def capture(line: str) -> None:
        try:
            captured.append(json.loads(line))
        except ValueError:
            captured.append({"line": line})

    WRITER.capturers.append(capture)
    try:
        yield captured
    finally:
        WRITER.capturers.remove(capture)


def metric(service: Service[Any], name: str, **labels: str) -> float:
    """One sample of the service's metrics (0.0 if it has not been recorded yet)."""
    value = service.metrics.sample(name, labels)
    return 0.0 if value is None else value


EventCrash = Literal["after-commit", "after-publish"]


def inject_event_faults(
    events: Events, *, crash: EventCrash | None = None, lose_acks: int = 0
) -> None:
    """Break ``events`` on purpose, to prove what survives (replaces earlier faults).

    ``crash="after-commit"``: SIGKILL this process right after a transaction holding
    outbox rows commits, before the relay publishes them. ``crash="after-publish"``: once
    the relay's batch is acknowledged by the broker, before the rows are marked sent.
    ``lose_acks``: handle that many events without acknowledging them, as if the ack
    were lost (the broker redelivers after the ack wait).
    """
    from corral.sdk.events._faults import Faults

    class _Injected(Faults):
        def __init__(self) -> None:
            self.acks_to_lose = lose_acks

        def after_commit(self) -> None:
            if crash == "after-commit":
                os.kill(os.getpid(), signal.SIGKILL)

        def after_publish(self) -> None:
            if crash == "after-publish":
                os.kill(os.getpid(), signal.SIGKILL)

        def lose_ack(self) -> bool:
            if self.acks_to_lose <= 0:
                return False
            self.acks_to_lose -= 1
            return True

    faults = _Injected()
    events.relay.faults = faults
    events.consumer.faults = faults
