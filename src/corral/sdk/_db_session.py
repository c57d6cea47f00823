"""``DbSession`` and ``DbReadSession``: a request's database session as a FastAPI
dependency.

Apart from :mod:`corral.sdk._database` because the annotation needs SQLAlchemy's
``AsyncSession`` at runtime (FastAPI reads it), and the SDK imports SQLAlchemy only for
services that use a database (``corral.sdk`` exports this name lazily).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from corral.sdk._database import Database

__all__ = ["DbReadSession", "DbSession"]


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.corral_db
    async with db.transaction() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]
"""A request's session: ``async def h(session: DbSession)``. Committed when the handler
returns (before the response is sent), rolled back when it raises."""


async def _request_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.corral_db
    async with db.read() as session:
        yield session


DbReadSession = Annotated[AsyncSession, Depends(_request_read_session, scope="function")]
"""A request's read-only session: ``async def h(session: DbReadSession)``. On SQLite it
neither waits for writers nor holds them up (WAL snapshot); a write in it is refused."""
