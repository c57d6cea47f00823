"""Read sessions (svc.db.read(), DbReadSession): on SQLite a read neither waits for a
writer holding the write lock nor takes it; a write in a read session is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.runtime.databases import provision_postgres, sqlite_url
from corral.sdk import Database, DbReadSession, Service
from corral.sdk.testing import serve_in_process

pytestmark = pytest.mark.timeout(60)

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True))


async def count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(items))).scalar_one())


async def write_in_read_session(db: Database) -> None:
    async with db.read() as session:
        await session.execute(items.insert().values(id=1))


async def started(tmp_path: Path) -> Database:
    db = Database(metadata=metadata)
    await db.start(sqlite_url(tmp_path / "reads.sqlite3"))
    return db


async def test_a_read_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """A writer holds the write lock (BEGIN IMMEDIATE) and waits until the read is done:
    the read sees the last committed state at once. With the read taking the write lock
    too, it would wait for the writer, which waits for it (the test's timeout)."""
    db = await started(tmp_path)
    try:
        async with db.transaction() as session:
            await session.execute(items.insert().values(id=1))
        writing, read_done = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as session:
                await session.execute(items.insert().values(id=2))
                writing.set()
                await read_done.wait()

        task = asyncio.create_task(writer())
        await writing.wait()
        async with db.read() as session:
            seen = await count(session)
        read_done.set()
        await task
        assert seen == 1, "the snapshot before the writer's commit"
        async with db.read() as session:
            assert await count(session) == 2
    finally:
        await db.stop()


async def test_a_write_in_a_read_session_is_refused(tmp_path: Path) -> None:
    db = await started(tmp_path)
    try:
        with pytest.raises(DBAPIError, match=r"readonly|read-only|query_only"):
            await write_in_read_session(db)
        async with db.read() as session:
            assert await count(session) == 0
    finally:
        await db.stop()


@pytest.mark.postgres
async def test_postgres_read_session_is_read_only(pg_admin_url: str, unique: str) -> None:
    import asyncpg

    from corral.runtime.databases import database_name

    url = await provision_postgres(pg_admin_url, "sdkreads", unique)
    db = Database(metadata=metadata)
    await db.start(url)
    try:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await write_in_read_session(db)
        async with db.read() as session:
            assert await count(session) == 0
    finally:
        await db.stop()
        admin = await asyncpg.connect(pg_admin_url)
        name = database_name("sdkreads", unique)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


async def test_db_read_session_in_a_handler(tmp_path: Path) -> None:
    svc = Service("items", metadata=metadata)

    @svc.get("/items")
    async def count(session: DbReadSession) -> dict[str, int]:
        return {
            "count": (await session.execute(select(func.count()).select_from(items))).scalar_one()
        }

    @svc.post("/items")
    async def sneaky(session: DbReadSession) -> dict[str, bool]:
        await session.execute(items.insert().values(id=9))
        return {"ok": True}

    async with serve_in_process(svc) as client:
        assert (await client.get("/items")).json() == {"count": 0}
        assert (await client.post("/items")).status_code == 500
        assert (await client.get("/items")).json() == {"count": 0}
