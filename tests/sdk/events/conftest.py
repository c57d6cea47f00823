"""Fixtures for the events tests: real nats-servers (embedded and the machine's external
one), unique systems whose streams are deleted afterwards, an in-memory span exporter."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events.helpers import NatsServer

EXTERNAL_URL = "nats://127.0.0.1:4222"


@pytest.fixture(scope="session")
def embedded_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.kill()


def _reachable(url: str) -> bool:
    host, port = url.removeprefix("nats://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _external() -> str:
    if not _reachable(EXTERNAL_URL):
        pytest.skip(f"no external nats-server at {EXTERNAL_URL}")
    return EXTERNAL_URL


@pytest.fixture(params=["embedded", "external"])
def nats_url(request: pytest.FixtureRequest, embedded_nats: NatsServer) -> str:
    if request.param == "embedded":
        return embedded_nats.url
    return _external()


@pytest.fixture
def external_nats_url() -> str:
    """The machine's own nats-server only (an older one: no atomic batches)."""
    return _external()


@pytest.fixture
def system() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def tmp_db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'svc.sqlite3'}"


@pytest.fixture
async def pg_db(pg_admin_url: str) -> AsyncIterator[str]:
    """A new database on the real PostgreSQL server (skipped when none runs), dropped
    afterwards."""
    name = "t" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://{pg_admin_url.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["tmp_db", pytest.param("pg_db", marks=pytest.mark.postgres)])
def outbox_db(request: pytest.FixtureRequest) -> str:
    """A fresh service database: a SQLite file, or a new PostgreSQL database."""
    url: str = request.getfixturevalue(request.param)
    return url
