"""The Compose export's PostgreSQL setup run by psql against a real server: one database
and one role per postgres service, least privilege, idempotent (it runs on every
``docker compose up``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.export._postgres import password_variable, postgres_services, render_setup_sql
from corral.manifest import parse
from corral.plan import Plan, resolve

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SERVER = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres", "PGDATABASE": "postgres"}
SERVER.update({k: v for k, v in os.environ.items() if k in ("PGHOST", "PGPORT", "PGUSER")})


def _psql(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", *args],
        env={**os.environ, **SERVER, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def plan(tmp_path: Path) -> Iterator[Plan]:
    unique = uuid.uuid4().hex[:8]
    text = f"""
name: shop
services:
  orders: {{app: o:svc, database: {{engine: postgres, name: t{unique}_orders}}}}
  stock: {{app: s:svc, database: {{engine: postgres, name: t{unique}_stock}}}}
"""
    resolved = resolve(parse(text, tmp_path / "corral.yaml"), python=sys.executable)
    yield resolved
    for service in postgres_services(resolved):
        name = service.database.name
        _psql("-c", f"DROP DATABASE IF EXISTS {name}")
        _psql("-c", f"DROP ROLE IF EXISTS {name}")


def test_setup_provisions_one_private_database_per_service(plan: Plan, tmp_path: Path) -> None:
    """Applied twice (idempotent), each role owns its own database, may not connect to
    the other's, and cannot create databases or roles."""
    script = tmp_path / "setup.sql"
    script.write_text(render_setup_sql(plan))
    env = {password_variable(s): f"pw-{s.name}" for s in postgres_services(plan)}
    for _ in range(2):
        result = _psql("-f", str(script), env=env)
        assert result.returncode == 0, result.stderr
    orders, stock = (s.database.name for s in postgres_services(plan))
    owner = _psql(
        "-c", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{orders}'"
    )
    assert owner.stdout.strip() == orders
    own = _psql("-U", orders, "-d", orders, "-c", "CREATE TABLE t (id int); SELECT current_user")
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip().endswith(orders)
    other = _psql("-U", orders, "-d", stock, "-c", "SELECT 1")
    assert other.returncode != 0
    assert "permission denied" in other.stderr
    create = _psql("-U", orders, "-d", orders, "-c", "CREATE DATABASE x")
    assert "permission denied" in create.stderr
    flags = _psql(
        "-c",
        f"SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = '{orders}'",
    )
    assert flags.stdout.strip() == "f|f|f"
