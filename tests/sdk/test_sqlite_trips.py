"""svc.db on SQLite: each statement is one trip to aiosqlite's thread, with every result
SQLAlchemy reads from a cursor (rows, rowcount, RETURNING, executemany, streams, errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from corral.sdk import Database
from corral.sdk._sqlite_trips import OneTripConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(metadata=metadata)
    await database.start(f"sqlite:///{tmp_path / 'items.db'}")
    yield database
    await database.stop()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call queued to an aiosqlite connection's thread, from now on."""
    seen: list[Any] = []
    original = OneTripConnection._execute

    async def counting(self: OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(OneTripConnection, "_execute", counting)
    return seen


async def test_the_engine_uses_one_trip_connections(db: Database) -> None:
    """Both pools (writes and reads) hand out OneTripConnection."""
    for engine in (db.engine, db._reader):
        assert engine is not None
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, OneTripConnection)


async def test_a_write_transaction_takes_a_trip_per_statement(
    db: Database, trips: list[Any]
) -> None:
    """BEGIN, two statements, COMMIT: four trips (aiosqlite's own cursor took ten, and
    the pool's rollback of the committed connection one more)."""
    async with db.transaction() as session:
        await session.execute(insert(items).values(name="a"))
        assert (await session.execute(select(items.c.name))).scalars().all() == ["a"]
    assert len(trips) == 4, trips


async def test_a_connection_returned_mid_transaction_is_rolled_back(db: Database) -> None:
    """The pool's rollback is skipped only after a commit or rollback: a connection
    given back with its transaction open (a session closed without either) is rolled
    back, so it never keeps SQLite's write lock."""
    session = db.sessionmaker()
    await session.execute(insert(items).values(name="left open"))
    await session.close()
    async with db.transaction() as other:  # would wait for the lock if it were held
        await other.execute(insert(items).values(name="next"))
    async with db.read() as session:
        names = (await session.execute(select(items.c.name))).scalars().all()
    assert names == ["next"]


async def test_results_are_what_sqlite3_gives(db: Database) -> None:
    """Rows, rowcount, RETURNING, executemany and a stream come back as SQLAlchemy
    reads them from sqlite3 itself."""
    async with db.transaction() as session:
        await session.execute(insert(items), [{"name": n} for n in ("b", "c", "d")])
        changed = await session.execute(
            update(items).where(items.c.name != "b").values(name=items.c.name + "!")
        )
        assert changed.rowcount == 2  # type: ignore[attr-defined]
        returned = await session.execute(
            insert(items).values(name="e").returning(items.c.id, items.c.name)
        )
        assert returned.one().name == "e"
    async with db.read() as session:
        count = await session.scalar(select(func.count()).select_from(items))
        assert count == 4
        stream = await session.stream(select(items.c.name).order_by(items.c.name))
        assert [row.name async for row in stream] == ["b", "c!", "d!", "e"]


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(db: Database) -> None:
    """A failing statement raises as it did through aiosqlite's cursor, and the
    transaction rolls back."""

    async def twice() -> None:
        async with db.transaction() as session:
            await session.execute(insert(items).values(name="same"))
            await session.execute(insert(items).values(name="same"))

    with pytest.raises(IntegrityError):
        await twice()
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(items)) == 0
