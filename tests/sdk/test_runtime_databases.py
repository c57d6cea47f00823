"""corral.runtime.databases: one PostgreSQL database and least-privilege role per service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from corral.runtime.databases import database_name, provision_postgres, sqlite_url

pytestmark = pytest.mark.postgres


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def system(pg_admin_url: str, unique: str) -> AsyncIterator[str]:
    """A unique system name; its databases and roles are dropped afterwards."""
    yield unique
    admin = await asyncpg.connect(pg_admin_url)
    try:
        for service in ("rides", "payments"):
            name = database_name(unique, service)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


async def test_service_cannot_connect_to_another_services_database(
    pg_admin_url: str, system: str
) -> None:
    """rides' role works in its own database and is refused by payments' database."""
    rides = await provision_postgres(pg_admin_url, system, "rides")
    payments = await provision_postgres(pg_admin_url, system, "payments")
    own = await asyncpg.connect(_dsn(rides))
    try:
        await own.execute("CREATE TABLE t (x int)")
        await own.execute("INSERT INTO t VALUES (1)")
        assert await own.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await own.close()
    foreign = make_url(rides).set(database=make_url(payments).database)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(_dsn(foreign.render_as_string(hide_password=False)))


async def test_role_has_least_privilege(pg_admin_url: str, system: str) -> None:
    """The service role is no superuser and cannot create roles or databases."""
    url = await provision_postgres(pg_admin_url, system, "rides")
    conn = await asyncpg.connect(_dsn(url))
    try:
        row = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
        assert tuple(row) == (False, False, False)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE DATABASE should_not_exist")
    finally:
        await conn.close()


async def test_provisioning_is_idempotent(pg_admin_url: str, system: str) -> None:
    """Provisioning twice returns the same URL and keeps the data."""
    first = await provision_postgres(pg_admin_url, system, "rides")
    conn = await asyncpg.connect(_dsn(first))
    await conn.execute("CREATE TABLE kept (x int)")
    await conn.close()
    second = await provision_postgres(pg_admin_url, system, "rides")
    assert first == second
    conn = await asyncpg.connect(_dsn(second))
    try:
        assert await conn.fetchval("SELECT count(*) FROM kept") == 0
    finally:
        await conn.close()


def test_names_and_sqlite_url(tmp_path: Path) -> None:
    """Identifiers are safe and bounded; SQLite URLs are absolute and async."""
    assert database_name("Ride-Hail", "ride-matching") == "ride_hail_ride_matching"
    assert database_name("1sys", "x").startswith("s_")
    assert len(database_name("a" * 80, "b" * 80)) == 63
    assert sqlite_url(tmp_path / "x.db") == f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
