"""ridehail on PostgreSQL: the same services, only the manifest's overlay added
(`--env postgres`: examples/ridehail/corral.postgres.yaml), end to end through the gateway."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import asyncpg
import pytest
from ridehail_cli.demo import tour
from ridehail_system import running_system

from corral.runtime.databases import database_name

pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.timeout(180)]

ADMIN_URL = os.environ.get(
    "RIDEHAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SERVICES = ("auth", "rides", "matching", "payments")


async def _reachable() -> bool:
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _drop(system: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        for service in SERVICES:
            name = database_name(system, service)
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await conn.close()


async def test_the_tour_runs_on_postgresql(tmp_path: Path) -> None:
    """With the postgres overlay (a unique system name, so its own databases), the tour
    completes a ride and its payment, and the rides table lives in PostgreSQL."""
    if not await _reachable():
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}")
    system = f"rhpg{uuid.uuid4().hex[:8]}"

    def edit(manifest: str) -> str:
        overlay = tmp_path / "ridehail" / "corral.postgres.yaml"
        overlay.write_text(
            overlay.read_text().replace("postgresql://postgres@127.0.0.1:5432/postgres", ADMIN_URL)
        )
        return manifest.replace("name: ridehail\n", f"name: {system}\n")

    try:
        async with running_system(tmp_path, edit=edit, environment="postgres") as (gateway, _):
            assert await tour(gateway) == 0
        rides = database_name(system, "rides")
        conn = await asyncpg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{rides}")
        try:
            assert await conn.fetchval("SELECT count(*) FROM rides WHERE status = 'completed'") == 1
        finally:
            await conn.close()
    finally:
        await _drop(system)
