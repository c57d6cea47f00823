"""corral.runtime.databases: one PostgreSQL database and least-privilege role per service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from corral.runtime.databases import (
    DatabaseSetupError,
    database_name,
    provision_postgres,
    sqlite_url,
)

pytestmark = pytest.mark.postgres


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pairs(unique: str) -> list[tuple[str, str]]:
    return [
        (unique, "rides"),
        (unique, "payments"),
        (unique, "order-items"),
        (f"{unique}-order", "items"),
    ]


@pytest.fixture
async def system(pg_admin_url: str, unique: str) -> AsyncIterator[str]:
    """A unique system name; its databases and roles are dropped afterwards."""
    yield unique
    admin = await asyncpg.connect(pg_admin_url)
    try:
        for pair in _pairs(unique):
            name = database_name(*pair)
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


async def test_systems_whose_joined_names_match_get_separate_databases(
    pg_admin_url: str, system: str
) -> None:
    """shop/order-items and shop-order/items get different databases, roles and passwords."""
    one = make_url(await provision_postgres(pg_admin_url, system, "order-items"))
    two = make_url(await provision_postgres(pg_admin_url, f"{system}-order", "items"))
    assert one.database != two.database
    assert one.username != two.username
    assert one.password != two.password
    conn = await asyncpg.connect(_dsn(one.render_as_string(hide_password=False)))
    try:
        await conn.execute("CREATE TABLE mine (x int)")
    finally:
        await conn.close()
    conn = await asyncpg.connect(_dsn(two.render_as_string(hide_password=False)))
    try:
        assert await conn.fetchval("SELECT to_regclass('mine')") is None
    finally:
        await conn.close()


async def test_refuses_a_role_corral_did_not_create(pg_admin_url: str, system: str) -> None:
    """An existing role of the same name without Corral's mark is left alone: error."""
    name = database_name(system, "rides")
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'theirs'")
    finally:
        await admin.close()
    with pytest.raises(DatabaseSetupError, match="not created by Corral"):
        await provision_postgres(pg_admin_url, system, "rides")
    admin = await asyncpg.connect(pg_admin_url)
    try:
        assert not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()


async def test_refuses_a_database_corral_did_not_create(pg_admin_url: str, system: str) -> None:
    """An existing database of the same name owned by another role is left alone: error."""
    name = database_name(system, "rides")
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    with pytest.raises(DatabaseSetupError, match="not created by Corral"):
        await provision_postgres(pg_admin_url, system, "rides")
    admin = await asyncpg.connect(pg_admin_url)
    try:
        owner = await admin.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name
        )
        assert owner != name
    finally:
        await admin.close()


def test_names_and_sqlite_url(tmp_path: Path) -> None:
    """Identifiers are safe, bounded and distinct per (system, service); SQLite URLs are
    absolute and async."""
    assert database_name("Ride-Hail", "ride-matching") == "ride_hail__ride_matching"
    assert database_name("shop", "order-items") != database_name("shop-order", "items")
    assert database_name("a--b", "c") != database_name("a", "b--c")
    assert database_name("1sys", "x").startswith("s_")
    assert len(database_name("a" * 80, "b" * 80)) == 63
    assert database_name("a" * 80, "b" * 80) != database_name("a" * 80, "b" * 81)
    assert sqlite_url(tmp_path / "x.db") == f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
