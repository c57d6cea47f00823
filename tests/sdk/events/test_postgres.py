"""The outbox and inbox tables on a real PostgreSQL server (127.0.0.1:5432), a fresh
database per test: replicas starting together create them once, under the schema lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from corral.sdk import Database
from corral.sdk.events import Events, MemoryBroker

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

REPLICAS = 4

app_md = MetaData()
Table("rides", app_md, Column("id", Integer, primary_key=True))


@pytest.fixture
async def fresh_db(pg_admin_url: str, unique: str) -> AsyncIterator[str]:
    """A new, empty database on the shared server, dropped afterwards."""
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{unique}"')
    finally:
        await admin.close()
    base = pg_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{unique}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{unique}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_replicas_starting_together_create_the_tables_once(fresh_db: str) -> None:
    """Four replicas (each its database and events, as svc.db and svc.events) start at
    the same moment on a fresh database: none fails with ``pg_type_typname_nsp_index``
    or ``relation "corral_outbox" already exists``, and the tables exist afterwards."""
    broker = MemoryBroker()
    databases = [Database(metadata=app_md) for _ in range(REPLICAS)]
    replicas: list[Events] = []

    async def start(database: Database) -> None:
        await database.start(fresh_db)
        events = Events("rides", transport=broker.transport(), engine=database.engine)
        replicas.append(events)
        await events.start()

    try:
        results = await asyncio.gather(*(start(db) for db in databases), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], errors
        async with databases[0].engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"rides", "corral_outbox", "corral_inbox"} <= tables
    finally:
        for events in replicas:
            await events.stop()
        for database in databases:
            await database.stop()
