"""svc.db: SQLite and PostgreSQL, session per request, migrations under a lock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sdk_helpers import APPS
from sqlalchemy import Column, Integer, MetaData, String, Table, text

from corral import contract
from corral.runtime.databases import provision_postgres, sqlite_url
from corral.sdk import Database, DbSession, Problem, Service, async_url
from corral.sdk.testing import serve_in_process

MIGRATIONS = APPS / "migrations"

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", String(100), nullable=False),
)


def make_service(**options: object) -> Service:
    svc = Service("notes", metadata=metadata, **options)  # type: ignore[arg-type]

    @svc.post("/notes")
    async def add(body: str, session: DbSession, fail: bool = False) -> dict[str, bool]:
        await session.execute(notes.insert().values(body=body))
        if fail:
            raise Problem(409, "refused after insert")
        return {"ok": True}

    @svc.get("/notes")
    async def count(session: DbSession) -> dict[str, int]:
        n = (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one()
        return {"count": n}

    return svc


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:***@h/db"),
        (
            "postgres://u:p@h:5433/db?sslmode=require",
            "postgresql+asyncpg://u:***@h:5433/db?ssl=require",
        ),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_async_url(given: str, expected: str) -> None:
    """Plain URLs get the async driver; explicit other drivers are left alone."""
    assert str(async_url(given)) == expected


async def test_session_commits_on_success_and_rolls_back_on_error() -> None:
    """A handler that returns commits; one that raises (even a 4xx Problem) rolls back."""
    async with serve_in_process(make_service()) as client:
        assert (await client.post("/notes", params={"body": "kept"})).status_code == 200
        refused = await client.post("/notes", params={"body": "dropped", "fail": True})
        assert refused.status_code == 409
        assert (await client.get("/notes")).json() == {"count": 1}
        ready = (await client.get(contract.READINESS_PATH)).json()
    assert ready["checks"]["database"]["ok"] is True
    assert ready["checks"]["migrations"]["detail"] == "create_all"


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    """SQLite connections run in WAL with a busy timeout and foreign keys on."""
    db = Database()
    await db.start(sqlite_url(tmp_path / "p.db"))
    async with db.engine.connect() as conn:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
        busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
    await db.stop()
    assert (mode, fks) == ("wal", 1)
    assert busy >= 5000


def test_concurrent_writers_across_processes_do_not_lock(tmp_path: Path) -> None:
    """Three processes doing read-then-write transactions on one file all succeed."""
    path = tmp_path / "race.db"
    url = sqlite_url(path)

    async def create() -> None:
        db = Database()
        await db.start(url)
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE log (who TEXT, seen INTEGER)"))
        await db.stop()

    asyncio.run(create())
    procs = [
        subprocess.Popen(
            [sys.executable, str(APPS / "writer.py"), url, f"p{i}", "40"], stderr=subprocess.PIPE
        )
        for i in range(3)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors

    async def rows() -> int:
        db = Database()
        await db.start(url)
        async with db.transaction() as session:
            n = int((await session.execute(text("SELECT count(*) FROM log"))).scalar_one())
        await db.stop()
        return n

    assert asyncio.run(rows()) == 120


async def test_migrations_apply_once_when_replicas_start_together(tmp_path: Path) -> None:
    """Four replicas migrating one SQLite file at once end on head without errors."""
    url = sqlite_url(tmp_path / "m.db")
    replicas = [Database(migrations=MIGRATIONS) for _ in range(4)]
    await asyncio.gather(*(db.start(url) for db in replicas))
    try:
        assert {db.revision for db in replicas} == {"0002"}
        async with replicas[0].engine.connect() as conn:
            cols = [row[1] for row in await conn.execute(text("PRAGMA table_info(rides)"))]
        assert cols == ["id", "rider", "seats"]
        assert await replicas[0].check_schema() == "revision 0002"
    finally:
        await asyncio.gather(*(db.stop() for db in replicas))


async def test_failed_migration_blocks_start_and_reports(tmp_path: Path) -> None:
    """A migration that fails leaves the schema state 'failed' and start raises."""
    broken = tmp_path / "broken" / "versions"
    broken.mkdir(parents=True)
    (broken / "0001_bad.py").write_text(
        'revision = "0001"\ndown_revision = None\n'
        "from alembic import op\n"
        "def upgrade():\n    op.execute('THIS IS NOT SQL')\n"
    )
    db = Database(migrations=broken.parent)
    with pytest.raises(Exception, match="syntax error"):
        await db.start(sqlite_url(tmp_path / "b.db"))
    assert db.schema_state == "failed"
    with pytest.raises(RuntimeError, match="schema failed"):
        await db.check_schema()
    await db.stop()


@pytest.mark.postgres
async def test_postgres_service_with_migrations(pg_admin_url: str, unique: str) -> None:
    """On a provisioned PostgreSQL database, replicas migrate once and sessions work."""
    import asyncpg

    from corral.runtime.databases import database_name

    url = await provision_postgres(pg_admin_url, "sdktest", unique)
    replicas = [Database(migrations=MIGRATIONS) for _ in range(3)]
    try:
        await asyncio.gather(*(db.start(url) for db in replicas))
        assert {db.revision for db in replicas} == {"0002"}
        async with replicas[0].transaction() as session:
            await session.execute(text("INSERT INTO rides (rider) VALUES ('ada')"))
        await replicas[1].check_reachable()
    finally:
        await asyncio.gather(*(db.stop() for db in replicas))
        admin = await asyncpg.connect(pg_admin_url)
        name = database_name("sdktest", unique)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()
