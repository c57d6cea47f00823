"""The service's own database: SQLAlchemy 2 async engine, a session per request, migrations.

- ``DATABASE_URL`` may be a plain ``postgresql://`` or ``sqlite:///`` URL; it is turned into
  the async driver's (asyncpg, aiosqlite).
- SQLite: WAL, ``busy_timeout``, foreign keys on, and every transaction starts with
  ``BEGIN IMMEDIATE``. WAL lets readers run beside a writer; ``BEGIN IMMEDIATE`` takes the
  write lock up front, so a second writer waits (``busy_timeout``) instead of failing with
  "database is locked" when a deferred read transaction tries to upgrade. The price: write
  transactions of all processes are serialized, which is SQLite's model anyway.
- Read sessions (:meth:`Database.read`, ``DbReadSession``) do not take that lock: on
  SQLite they come from a second pool whose connections are ``query_only`` and begin a
  deferred transaction (one WAL snapshot), so a read neither waits for writers nor makes
  them wait; on PostgreSQL the transaction is ``READ ONLY``. A write in one is refused.
- Migrations (Alembic, a ``versions/`` directory, no ``env.py`` needed) or ``create_all``
  run at start under a lock, so replicas starting together apply them exactly once:
  PostgreSQL ``pg_advisory_xact_lock``, SQLite an exclusive ``flock`` on a file beside the
  database.

SQLAlchemy is imported when a database starts, not with the SDK: a service without a
database never pays for it (``import corral.sdk`` is on every instance's start path).
``DbSession`` lives in :mod:`corral.sdk._db_session`, since its annotation needs the real
``AsyncSession`` at runtime.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import URL, Connection
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["Database", "async_url", "run_schema_locked"]

SQLITE_BUSY_TIMEOUT_MS = 15_000


def async_url(url: str | URL) -> URL:
    """The async-driver form of a database URL (``postgresql://`` -> ``+asyncpg``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url) if isinstance(url, str) else url
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver in ("", "psycopg2", "asyncpg"):
            parsed = parsed.set(drivername="postgresql+asyncpg")
            query = dict(parsed.query)
            # libpq's sslmode is spelled ssl for asyncpg.
            if "sslmode" in query:
                query["ssl"] = query.pop("sslmode")
                parsed = parsed.set(query=query)
    elif backend == "sqlite" and driver in ("", "pysqlite", "aiosqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # We emit BEGIN ourselves (see _sqlite_begin); the driver must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_on(connection: Connection, statement: str) -> None:
    """Run ``statement`` (a BEGIN) on the connection's aiosqlite connection directly.

    One trip to aiosqlite's thread, where ``exec_driver_sql`` takes three (cursor,
    execute, close) plus SQLAlchemy's statement machinery: a fifth of the CPU of a short
    transaction (bench/ridehail_capacity.py). An error still reaches callers as
    SQLAlchemy's (``OperationalError`` when the lock is not had within the busy
    timeout), as ``exec_driver_sql`` would raise it. Any other driver takes the
    ordinary path.
    """
    import sqlite3

    import aiosqlite
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.util import await_only

    driver = connection.connection.driver_connection
    if not isinstance(driver, aiosqlite.Connection):
        connection.exec_driver_sql(statement)
        return
    try:
        # The cursor is left to the garbage collector: a BEGIN has no rows to fetch, and
        # closing it would be one more trip.
        await_only(driver.execute(statement))
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, sqlite3.Error, dialect=connection.dialect
        ) from exc


def _sqlite_begin(connection: Connection) -> None:
    _begin_on(connection, "BEGIN IMMEDIATE")


def _sqlite_reader_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_begin_deferred(connection: Connection) -> None:
    _begin_on(connection, "BEGIN")


def _one_trip_statements(url: URL, options: dict[str, Any]) -> dict[str, Any]:
    """Engine options whose aiosqlite connections run a statement in one trip to their
    thread (corral.sdk._sqlite_trips), opened with what the URL and ``connect_args``
    say; a caller's own ``creator`` or ``async_creator`` is left alone."""
    if "creator" in options or "async_creator" in options:
        return options
    from corral.sdk._sqlite_trips import connector

    options = dict(options)
    args, kwargs = url.get_dialect()().create_connect_args(url)
    options["async_creator"] = connector(args, {**kwargs, **options.pop("connect_args", {})})
    return options


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # flock, not a library: the stdlib call is all a single-host SQLite file needs.
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def run_schema_locked[T](engine: AsyncEngine, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in one transaction that holds the schema lock (see the module
    docstring), so schema work of replicas starting together runs one at a time: the
    service's migrations or ``create_all``, and the events' outbox and inbox tables."""
    from sqlalchemy import text

    url = engine.url
    if url.get_backend_name() != "sqlite":
        digest = hashlib.sha256(f"corral-migrate:{url}".encode()).digest()
        async with engine.connect() as conn:
            # Transaction-scoped: released by the commit, even if this process dies.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"),
                {"k": int.from_bytes(digest[:8], "big", signed=True)},
            )
            result = await conn.run_sync(fn)
            await conn.commit()
            return result
    database = url.database
    if not database or database == ":memory:":
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    lock = _file_lock(Path(database + ".migrate.lock"))
    await asyncio.to_thread(lock.__enter__)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        lock.__exit__(None, None, None)


class Database:
    """``svc.db``: created by the Service, started with it when it has a database."""

    def __init__(
        self,
        *,
        migrations: str | Path | None = None,
        metadata: MetaData | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.migrations = Path(migrations) if migrations is not None else None
        self.metadata = metadata
        self.engine_options = dict(engine_options or {})
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._reader: AsyncEngine | None = None
        """SQLite only: the pool of read sessions (see the module docstring)."""
        self._read_sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self.url: URL | None = None
        self.schema_state = "pending"
        self.revision: str | None = None

    # -- lifecycle ------------------------------------------------------------------
    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database is not started (is the service running?)")
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError("the database is not started (is the service running?)")
        return self._sessionmaker

    @property
    def is_sqlite(self) -> bool:
        return self.url is not None and self.url.get_backend_name() == "sqlite"

    async def start(self, url: str) -> None:
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        self.url = async_url(url)
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        options.update(self.engine_options)
        if self.is_sqlite:
            options = _one_trip_statements(self.url, options)
        engine = create_async_engine(self.url, **options)
        reader = None
        if self.is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            reader = create_async_engine(self.url, **options)
            event.listen(reader.sync_engine, "connect", _sqlite_reader_pragmas)
            event.listen(reader.sync_engine, "begin", _sqlite_begin_deferred)
        self._engine, self._reader = engine, reader
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessionmaker = async_sessionmaker(reader or engine, expire_on_commit=False)
        await self.prepare_schema()

    async def stop(self) -> None:
        for engine in (self._engine, self._reader):
            if engine is not None:
                await engine.dispose()
        self._engine = self._reader = None
        self._sessionmaker = self._read_sessionmaker = None

    # -- sessions -------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error."""
        async with self.sessionmaker() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session in a read-only transaction, rolled back at the end: on SQLite it
        neither waits for a writer nor holds one up (see the module docstring). For
        handlers that only read: ``async def h(session: DbReadSession)``."""
        if self._read_sessionmaker is None:
            raise RuntimeError("the database is not started (is the service running?)")
        from sqlalchemy import text

        async with self._read_sessionmaker() as session:
            try:
                if not self.is_sqlite:
                    await session.execute(text("SET TRANSACTION READ ONLY"))
                yield session
            finally:
                await session.rollback()

    async def session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency; prefer the ``DbSession`` annotation, which commits before
        the response is sent (``Depends(svc.db.session, scope="function")`` does too)."""
        async with self.transaction() as session:
            yield session

    # -- readiness ------------------------------------------------------------------
    async def check_reachable(self) -> None:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def check_schema(self) -> str:
        if self.schema_state != "applied":
            raise RuntimeError(f"schema {self.schema_state}")
        return f"revision {self.revision}" if self.revision else "create_all"

    # -- schema ---------------------------------------------------------------------
    @property
    def manages_schema(self) -> bool:
        return self.migrations is not None or self.metadata is not None

    async def prepare_schema(self) -> None:
        """Apply migrations (or ``create_all``) once, whatever the number of replicas."""
        if not self.manages_schema:
            return
        try:
            self.revision = await run_schema_locked(self.engine, self._apply)
        except BaseException:
            self.schema_state = "failed"
            raise
        self.schema_state = "applied"

    def _apply(self, connection: Connection) -> str | None:
        if self.migrations is None:
            assert self.metadata is not None
            self.metadata.create_all(connection)
            return None
        return _alembic_upgrade(connection, self.migrations, self.metadata)


def _alembic_upgrade(
    connection: Connection, directory: Path, metadata: MetaData | None
) -> str | None:
    """``alembic upgrade head`` on this connection, without an ``env.py``.

    Uses EnvironmentContext the way Alembic's own docs show (``script._upgrade_revs`` is
    what ``alembic.command.upgrade`` passes as ``fn``), so a service's migrations folder
    only needs ``versions/`` (and ``script.py.mako`` to generate new revisions).
    """
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", os.fspath(directory))
    script = ScriptDirectory.from_config(config)

    def upgrade(rev: Any, _: MigrationContext) -> Any:
        return script._upgrade_revs("head", rev)

    with EnvironmentContext(config, script, fn=upgrade, destination_rev="head") as env:
        env.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with env.begin_transaction():
            env.run_migrations()
    return MigrationContext.configure(connection).get_current_revision()
