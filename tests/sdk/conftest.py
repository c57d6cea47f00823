"""Fixtures for the SDK tests: subprocess services and the real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sdk_helpers import APPS, ServedProcess

PG_ADMIN_URL = os.environ.get("CORRAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Any]:
    started: list[ServedProcess] = []

    def start(
        target: str, *, cwd: Path = APPS, env: dict[str, str] | None = None, port: int | None = None
    ) -> ServedProcess:
        served = ServedProcess(
            target, cwd, env or {}, tmp_path / f"serve-{len(started)}.log", port=port
        )
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
async def pg_admin_url() -> str:
    """A superuser URL of the real PostgreSQL server (skips when none runs)."""
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    await conn.close()
    return PG_ADMIN_URL


@pytest.fixture
def unique() -> str:
    """A name unique to this test run (for databases and roles on the shared server)."""
    return "t" + uuid.uuid4().hex[:10]
