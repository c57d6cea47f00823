"""SQL the services share: one statement both of their databases understand, and the
answer a service gives while its database is away."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.sdk import PROBLEM_JSON, Service

RETRY_AFTER_S = 1


def insert_new(session: AsyncSession, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the session's dialect (SQLite or
    PostgreSQL): the race-free "create it unless it exists", where "select, then insert"
    lets two replicas both see nothing and the second fail on the key."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def unavailable(exc: DBAPIError) -> bool:
    """The database is away (locked past SQLite's busy timeout, a PostgreSQL connection
    terminated or refused), as opposed to a query that is wrong."""
    return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated


def answer_503_while_the_database_is_away(svc: Service[Any]) -> None:
    """A database outage answers 503 problem+json with ``Retry-After`` (clients retry;
    the gateway's retry policy may too), not a 500 that says the service is broken."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, DBAPIError) or not unavailable(exc):
            raise exc
        svc.log.warning("database unavailable", error=type(exc.orig).__name__)
        body = {
            "type": "about:blank",
            "title": "Database unavailable",
            "status": 503,
            "detail": "the service's database does not answer right now; try again shortly",
        }
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return JSONResponse(body, status_code=503, headers=headers, media_type=PROBLEM_JSON)

    svc.exception_handler(DBAPIError)(handler)
