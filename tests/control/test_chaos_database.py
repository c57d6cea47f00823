"""A database outage on PostgreSQL (`POST /v1/chaos/database`): while it lasts, the
service's connections are terminated as soon as they are made; when it ends (on time),
they live again, and nothing on the server was changed. Needs the machine's PostgreSQL
(skipped, saying so, without one)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from test_cli_system import FIXTURE, detached

from corral.api import ApiClient, ApiError
from corral.runtime.databases import database_name, provision_postgres

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(120)]

PG_ADMIN_URL = os.environ.get("CORRAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SYSTEM = f"chaospg{uuid.uuid4().hex[:8]}"


async def _reachable() -> str | None:
    try:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return str(exc)
    await connection.close()
    return None


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    problem = asyncio.run(_reachable())
    if problem is not None:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {problem}")
    manifest = f"""name: {SYSTEM}
databases: {{postgres: {{url: "{PG_ADMIN_URL}"}}}}
services:
  store:
    command: [{sys.executable}, {FIXTURE}]
    readiness: /readyz
    database: postgres
"""
    try:
        with detached(tmp_path_factory.mktemp("chaospg"), manifest) as folder:
            yield folder
    finally:
        asyncio.run(_drop())


async def _drop() -> None:
    name = database_name(SYSTEM, "store")
    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await connection.close()


async def _survives(url: str, seconds: float) -> bool:
    """Whether a new connection to ``url`` still answers after ``seconds``."""
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    try:
        await asyncio.sleep(seconds)
        await connection.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    finally:
        await connection.close(timeout=1)
    return True


def test_a_postgres_outage_terminates_connections_until_it_ends(system: Path) -> None:
    """During the outage a connection lasts well under a second; after it (expired by
    the control plane), one lasts; the experiment says what it did and how it ended."""
    url = asyncio.run(provision_postgres(PG_ADMIN_URL, SYSTEM, "store"))
    url = url.replace("postgresql+asyncpg://", "postgresql://")
    assert asyncio.run(_survives(url, 0.5))
    with ApiClient.for_state_dir(system / ".corral") as api:
        started = api.chaos_database("store", 3.0)
        assert started.detail.startswith(f"connections to {database_name(SYSTEM, 'store')}")
        assert not asyncio.run(_survives(url, 0.5))
        deadline = time.monotonic() + 20
        while api.chaos().active and time.monotonic() < deadline:
            time.sleep(0.1)
        [ended] = [e for e in api.chaos().recent if e.id == started.id]
    assert (ended.state, ended.outcome) == ("expired", "connections allowed again")
    assert asyncio.run(_survives(url, 0.5))


def test_an_unknown_service_is_one_line(system: Path) -> None:
    """An unknown service: a 404 problem naming it, not a traceback; nothing begun."""
    with (
        ApiClient.for_state_dir(system / ".corral") as api,
        pytest.raises(ApiError, match="unknown service") as caught,
    ):
        api.chaos_database("nope", 1.0)
    assert caught.value.status == 404
    with ApiClient.for_state_dir(system / ".corral") as api:
        assert api.chaos().active == []
