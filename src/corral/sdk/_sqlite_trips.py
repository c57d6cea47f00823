"""aiosqlite connections whose statements take one trip to the connection's thread.

aiosqlite runs every call on a thread of its own per connection, and SQLAlchemy's
adapter makes three or four calls per statement (create a cursor, execute, fetch the
rows, close): each a trip through a queue, a thread wake-up and a call back into the
event loop. Measured here, a trip costs about 80 us of CPU and a short write
transaction took ten of them (1.7 ms of CPU, against 26 us for the same statements on
sqlite3 directly; bench/ridehail_capacity.py). :class:`OneTripConnection` is
aiosqlite's connection with one change: its cursors execute a statement, read its rows
and close in a single trip, then hand SQLAlchemy the buffered result. A transaction
then takes a trip per statement plus BEGIN and COMMIT (the pool's rollback of a
connection it takes back is skipped when the last call committed or rolled back).

A trip reads at most :data:`PART` rows: a result that has more keeps its sqlite3
cursor open on the connection's thread, and the rows after it come a part at a time, as
they are fetched. A plain statement's rows are all read at once anyway (SQLAlchemy's
adapter fetches them right after executing: a second trip only past ``PART`` rows); a
server-side cursor (``stream()``, ``yield_per``) holds at most one part in memory, as
aiosqlite's own cursor held one ``fetchmany``.
Written here rather than taken from a library: no maintained package offers it, and it
is a cursor class over aiosqlite's own connection, which still owns the thread, the
connection's lifecycle and every other call.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

import aiosqlite

__all__ = ["OneTripConnection", "OneTripCursor", "connector"]

PART = 256
"""Rows a trip reads at most; a stream holds no more than this (or the size it asks
``fetchmany`` for, if larger) at a time."""

_Outcome = tuple[Any, int, int | None, list[Any], "sqlite3.Cursor | None"]


def _run(connection: aiosqlite.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the statement and its first part of rows; the
    cursor comes back open only if rows may remain."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except BaseException:
        cursor.close()
        raise
    return _part(cursor, PART)


def _part(cursor: sqlite3.Cursor, size: int | None) -> _Outcome:
    """On the connection's thread: up to ``size`` more rows (all if None); the cursor
    is closed once it is read to the end, and ``rowcount`` is then final (sqlite3
    counts a RETURNING statement's changes when its last row is stepped)."""
    try:
        if cursor.description is None:
            rows: list[Any] = []
        elif size is None:
            rows = cursor.fetchall()
        else:
            rows = cursor.fetchmany(size)
    except BaseException:
        cursor.close()
        raise
    more = cursor.description is not None and size is not None and len(rows) == size
    outcome = (cursor.description, cursor.rowcount, cursor.lastrowid, rows)
    if not more:
        cursor.close()
    return (*outcome, cursor if more else None)


def _close(cursor: sqlite3.Cursor) -> None:
    cursor.close()


class OneTripCursor:
    """The part of ``aiosqlite.Cursor`` that SQLAlchemy's adapter uses; each
    ``execute`` is one trip, and so is each fetch past the rows already read (none for
    a result of up to :data:`PART` rows)."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.arraysize = 1
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()
        self._open: sqlite3.Cursor | None = None
        """The sqlite3 cursor, while its result has rows not read yet."""

    def __await__(self) -> Generator[Any, None, OneTripCursor]:
        """``await connection.cursor()``, as aiosqlite's cursor allows too."""
        return self._itself().__await__()

    async def _itself(self) -> OneTripCursor:
        return self

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _take(self, outcome: _Outcome) -> None:
        self.description, self.rowcount, self.lastrowid, rows, self._open = outcome
        self._rows.extend(rows)

    async def _trip(self, sql: str, parameters: Any, *, many: bool) -> OneTripCursor:
        await self.close()
        # aiosqlite's queue to its thread (the same call its own cursor makes).
        self._take(await self._connection._execute(_run, self._connection, sql, parameters, many))
        return self

    async def _more(self, wanted: int | None) -> None:
        """Reads on while fewer than ``wanted`` rows (all if None) are buffered."""
        while self._open is not None and (wanted is None or len(self._rows) < wanted):
            size = None if wanted is None else max(PART, wanted - len(self._rows))
            self._take(await self._connection._execute(_part, self._open, size))

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._trip(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._trip(sql, parameters, many=True)

    async def fetchone(self) -> Any:
        await self._more(1)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        await self._more(count)
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        await self._more(None)
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()
        cursor, self._open = self._open, None
        if cursor is not None:
            await self._connection._execute(_close, cursor)


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, whose :meth:`cursor` costs no trip (see the module
    docstring), and whose :meth:`rollback` costs none right after a commit or rollback
    (the pool rolls back every connection it takes back, committed or not)."""

    _idle = False
    """True only when the last call was a commit or rollback that succeeded: no
    transaction can be open. Any other call (SQL, BEGIN included) clears it first."""

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._idle = False
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def commit(self) -> None:
        await super().commit()
        self._idle = True

    async def rollback(self) -> None:
        if self._idle:
            return
        await super().rollback()
        self._idle = True

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        # Not a coroutine: SQLAlchemy enters the cursor without awaiting the call, as
        # aiosqlite's (awaitable and a context manager) allows.
        return OneTripCursor(self)


def connector(args: Sequence[Any], kwargs: dict[str, Any]) -> Callable[[], Any]:
    """``async_creator`` for ``create_async_engine``: a :class:`OneTripConnection` to
    ``sqlite3.connect(*args, **kwargs)`` (what the URL says, as SQLAlchemy's dialect
    reads it), its thread a daemon as SQLAlchemy makes aiosqlite's."""

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(lambda: sqlite3.connect(*args, **kwargs), 64)
        connection._thread.daemon = True  # as SQLAlchemy's dialect makes aiosqlite's
        await connection  # starts the thread and connects
        return connection

    return connect
