"""contracts.sql's outage answer: a database that is away is a 503 problem+json with
Retry-After (clients retry), a query that is wrong is still a 500."""

from __future__ import annotations

import sqlite3

from contracts.sql import answer_503_while_the_database_is_away
from sqlalchemy.exc import IntegrityError, OperationalError

from corral.sdk import PROBLEM_JSON, Service
from corral.sdk.testing import serve_in_process


def make_service() -> Service:
    svc = Service("outage")
    answer_503_while_the_database_is_away(svc)

    @svc.get("/locked")
    async def locked() -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))

    @svc.get("/duplicate")
    async def duplicate() -> None:
        raise IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE failed"))

    return svc


async def test_a_locked_database_is_a_503_to_retry() -> None:
    """SQLite's busy timeout ran out (a write lock held by an outage): 503, Retry-After."""
    async with serve_in_process(make_service()) as client:
        response = await client.get("/locked")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "1"
    assert response.json()["title"] == "Database unavailable"


async def test_a_wrong_query_is_still_a_500() -> None:
    """An integrity error is the service's own mistake, not an outage."""
    async with serve_in_process(make_service()) as client:
        response = await client.get("/duplicate")
    assert response.status_code == 500
