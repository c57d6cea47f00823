"""The PostgreSQL variant of ridehail is an environment overlay (corral.postgres.yaml)
that changes only where the data lives, so the two never drift apart."""

from __future__ import annotations

from ridehail_system import EXAMPLE

from corral.manifest import DatabaseEngine, load


def test_postgres_overlay_only_changes_the_databases() -> None:
    """`--env postgres` = corral.yaml + a postgres server + `database: postgres` on every
    service that keeps data (tracking keeps none)."""
    default = load(EXAMPLE).spec
    postgres = load(EXAMPLE, environment="postgres").spec
    assert postgres.databases.postgres is not None
    assert postgres.databases.postgres.url == "postgresql://postgres@127.0.0.1:5432/postgres"
    engines = {name: spec.database.engine for name, spec in postgres.services.items()}
    assert engines == {
        "auth": DatabaseEngine.POSTGRES,
        "rides": DatabaseEngine.POSTGRES,
        "matching": DatabaseEngine.POSTGRES,
        "payments": DatabaseEngine.POSTGRES,
        "fakepay": DatabaseEngine.POSTGRES,
        "tracking": DatabaseEngine.NONE,
    }
    unchanged = postgres.model_copy(
        update={
            "databases": default.databases,
            "services": {
                name: spec.model_copy(update={"database": default.services[name].database})
                for name, spec in postgres.services.items()
            },
        }
    )
    assert unchanged == default
