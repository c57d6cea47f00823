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

Buffering is what SQLAlchemy's adapter does anyway for every statement that is not a
server-side cursor; a server-side cursor (``stream()``) gets the same buffered rows.
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

_Outcome = tuple[Any, int, int | None, list[Any]]


def _run(connection: aiosqlite.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the statement, its rows, closed."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor:
    """The part of ``aiosqlite.Cursor`` that SQLAlchemy's adapter uses; each
    ``execute`` is one trip, fetching and closing are none."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.arraysize = 1
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    def __await__(self) -> Generator[Any, None, OneTripCursor]:
        """``await connection.cursor()``, as aiosqlite's cursor allows too."""
        return self._itself().__await__()

    async def _itself(self) -> OneTripCursor:
        return self

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _trip(self, sql: str, parameters: Any, *, many: bool) -> OneTripCursor:
        # aiosqlite's queue to its thread (the same call its own cursor makes).
        outcome: _Outcome = await self._connection._execute(
            _run, self._connection, sql, parameters, many
        )
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._trip(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._trip(sql, parameters, many=True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


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
