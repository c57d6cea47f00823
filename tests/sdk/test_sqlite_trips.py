"""svc.db on SQLite: each statement is one trip to aiosqlite's thread, with every result
SQLAlchemy reads from a cursor (rows, rowcount, RETURNING, executemany, streams, errors)."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from corral.sdk import Database
from corral.sdk._sqlite_trips import PART, OneTripConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
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


async def test_a_stream_holds_a_part_of_its_rows_not_the_table(db: Database) -> None:
    """A server-side cursor reads in parts: streaming 40 MB of rows never holds them
    all (the cursor that buffered every result held the whole table at once)."""
    blob = 20_000
    rows = 2_000
    async with db.transaction() as session:
        await session.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)"
                " INSERT INTO items (name) SELECT hex(randomblob(:half)) FROM n"
            ),
            {"rows": rows, "half": blob // 2},
        )
    tracemalloc.start()
    try:
        seen = 0
        async with db.read() as session:
            stream = await session.stream(select(items.c.name).execution_options(yield_per=100))
            async for partition in stream.partitions():
                seen += sum(len(name) for (name,) in partition)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == rows * blob
    # A part (PART rows), the rest of the one before and a partition: ~10 MB. The
    # whole table is 40 MB.
    assert peak < rows * blob / 2, peak


@pytest.mark.parametrize("count", [PART - 1, PART, PART + 1, 3 * PART + 7])
async def test_results_longer_than_a_part_come_whole(db: Database, count: int) -> None:
    """Past a part, a plain SELECT, a RETURNING (with its rowcount) and a stream fetched
    one row at a time all give every row."""
    names = [f"n{i:05}" for i in range(count)]
    async with db.transaction() as session:
        await session.execute(insert(items), [{"name": n} for n in names])
        changed = await session.execute(
            update(items).values(name=items.c.name + "!").returning(items.c.name)
        )
        assert sorted(changed.scalars().all()) == [n + "!" for n in names]
        assert changed.rowcount == count  # type: ignore[attr-defined]
    async with db.read() as session:
        everything = (await session.execute(select(items.c.name).order_by(items.c.id))).all()
        assert [row.name for row in everything] == [n + "!" for n in names]
        stream = await session.stream(select(items.c.name).order_by(items.c.id))
        assert [row.name async for row in stream] == [n + "!" for n in names]


async def test_a_stream_left_early_closes_its_cursor(db: Database) -> None:
    """A stream abandoned after its first rows closes its sqlite3 cursor; the
    connection then takes writes again."""
    async with db.transaction() as session:
        await session.execute(insert(items), [{"name": f"x{i}"} for i in range(2 * PART)])
    async with db.read() as session:
        stream = await session.stream(select(items.c.name))
        assert len(await stream.fetchmany(3)) == 3
        await stream.close()
    async with db.transaction() as session:
        await session.execute(insert(items).values(name="after"))
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(items)) == 2 * PART + 1
