"""Per-service databases: a SQLite file by default, a PostgreSQL database and role on request.

PostgreSQL provisioning gives each service one database and one login role that owns it,
with least privilege: the role cannot create databases or roles, and ``CONNECT`` on each
service database is revoked from ``PUBLIC``, so service A's role cannot even connect to
service B's database. Provisioning is idempotent (safe on every ``corral up``) and safe
when two provisioners race (duplicate errors are treated as "already there"). Corral
only adopts a role and database it created itself for the same system and service.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from corral.errors import CorralError
from corral.manifest import DatabaseEngine
from corral.plan import Plan, ServicePlan

__all__ = [
    "POSTGRES_URL_VARIABLE",
    "DatabaseSetupError",
    "database_name",
    "provision_postgres",
    "service_database_url",
    "sqlite_url",
]

_IDENT = re.compile(r"[^a-z0-9_]")
_PLAIN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_MAX_IDENT = 63  # PostgreSQL's NAMEDATALEN - 1


def database_name(system: str, service: str) -> str:
    """``<system>__<service>`` as a safe PostgreSQL identifier (lower case, ``[a-z0-9_]``),
    distinct for every (system, service) pair.

    ``-`` becomes ``_``, so ``__`` separates the two parts unambiguously as long as
    neither holds ``--`` (or anything else that maps to ``_``): ``shop``/``order-items``
    is ``shop__order_items``, ``shop-order``/``items`` is ``shop_order__items``. A part
    that is not plain, or a result over 63 characters, gets a hash of the exact pair."""
    parts = [part.lower() for part in (system, service)]
    raw = "__".join(_IDENT.sub("_", part) for part in parts)
    if not raw[0].isalpha():
        raw = "s_" + raw
    plain = all(_PLAIN.fullmatch(part) for part in parts)
    if not plain or len(raw) > _MAX_IDENT:
        digest = hashlib.sha256(f"{parts[0]}/{parts[1]}".encode()).hexdigest()[:8]
        raw = f"{raw[: _MAX_IDENT - 9]}_{digest}"
    return raw


def _mark(system: str, service: str) -> str:
    """The comment Corral puts on the role and database it creates for a service."""
    return f"corral:{system}/{service}"


def _password(admin_url: str, name: str) -> str:
    # Derived, not random: every provisioning run (and every replica's URL) gets the same
    # password, so re-running `corral up` never breaks connections of running instances.
    # It is as secret as the admin URL it is derived from.
    return hmac.new(admin_url.encode(), f"corral-db:{name}".encode(), hashlib.sha256).hexdigest()[
        :32
    ]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def provision_postgres(admin_url: str, system: str, service: str) -> str:
    """Create (or update) the service's database and role; return the service's URL.

    ``admin_url`` is a superuser (or CREATEROLE + CREATEDB) URL of the server. The result
    is a ``postgresql+asyncpg://`` URL for the service's own role and database. Both are
    marked ``COMMENT ... 'corral:<system>/<service>'``; a role or database of that name
    without the mark raises :class:`DatabaseSetupError` and is left untouched.
    """
    admin = make_url(admin_url)
    name = database_name(system, service)
    password = _password(admin_url, name)
    ident = _quote(name)
    mark = _mark(system, service)
    comment = "'" + mark.replace("'", "''") + "'"
    conn = await asyncpg.connect(_asyncpg_dsn(admin))
    try:
        options = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        # Passwords cannot be bound parameters in DDL; this one is hex, so quoting is safe.
        # Created and marked in one transaction, so a racing provisioner sees either no
        # role or a marked one.
        with contextlib.suppress(asyncpg.DuplicateObjectError):
            async with conn.transaction():
                await conn.execute(f"CREATE ROLE {ident} {options} PASSWORD '{password}'")
                await conn.execute(f"COMMENT ON ROLE {ident} IS {comment}")
        found = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", name
        )
        if found != mark:
            # Someone else's role (or another system's, before names were distinct): never
            # take it over by resetting its password.
            raise DatabaseSetupError(
                f"role {name!r} exists but was not created by Corral for {system}/{service} "
                f"(its comment is {found!r}, expected {mark!r}); drop or rename it"
            )
        await conn.execute(f"ALTER ROLE {ident} {options} PASSWORD '{password}'")
        # CREATE DATABASE cannot run in a transaction: a database owned by the (marked)
        # role counts as Corral's even before its own comment is written.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            await conn.execute(f"CREATE DATABASE {ident} OWNER {ident}")
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name
        )
        if owner != name:
            raise DatabaseSetupError(
                f"database {name!r} exists but was not created by Corral for "
                f"{system}/{service} (owned by {owner!r}); drop or rename it"
            )
        await conn.execute(f"COMMENT ON DATABASE {ident} IS {comment}")
        await conn.execute(f"REVOKE ALL ON DATABASE {ident} FROM PUBLIC")
        await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {ident} TO {ident}")
    finally:
        await conn.close()
    # Inside the new database: only its owner may create objects in the public schema.
    inner = await asyncpg.connect(_asyncpg_dsn(admin.set(database=name)))
    try:
        await inner.execute(f"ALTER SCHEMA public OWNER TO {ident}")
        await inner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await inner.close()
    return URL.create(
        "postgresql+asyncpg",
        username=name,
        password=password,
        host=admin.host,
        port=admin.port,
        database=name,
    ).render_as_string(hide_password=False)


def sqlite_url(path: str | Path) -> str:
    """The async SQLAlchemy URL of a SQLite file (absolute, so the working dir does not matter)."""
    return "sqlite+aiosqlite:///" + str(Path(path).resolve())


POSTGRES_URL_VARIABLE = "CORRAL_POSTGRES_URL"
"""Admin URL of a PostgreSQL server, when the manifest names none."""


class DatabaseSetupError(CorralError):
    """A service's database could not be prepared (no server configured, provisioning failed)."""


async def service_database_url(
    plan: Plan, service: ServicePlan, environ: Mapping[str, str]
) -> str | None:
    """The DATABASE_URL a service's instances get: its SQLite file (folder created), its
    own provisioned PostgreSQL database, or None for ``database: none``. Shared by the
    orchestrator and ``corral migrate`` so both point at the same database."""
    database = service.database
    if database.engine is DatabaseEngine.SQLITE and database.sqlite_path is not None:
        database.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_url(database.sqlite_path)
    if database.engine is DatabaseEngine.POSTGRES:
        admin = plan.postgres_admin_url or environ.get(POSTGRES_URL_VARIABLE)
        if not admin:
            raise DatabaseSetupError(
                "uses a postgres database but no server is configured: set "
                f"databases.postgres.url in the manifest or {POSTGRES_URL_VARIABLE}"
            )
        try:
            return await provision_postgres(admin, plan.system, service.name)
        except Exception as exc:
            raise DatabaseSetupError(f"cannot provision its postgres database: {exc}") from exc
    return None
