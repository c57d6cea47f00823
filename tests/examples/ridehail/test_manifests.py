"""The PostgreSQL variant of ridehail differs from the default manifest only where the
database is chosen, so the two never drift apart."""

from __future__ import annotations

from typing import Any

import yaml
from ridehail_system import EXAMPLE

from corral.manifest import parse


def _load(name: str) -> dict[str, Any]:
    path = EXAMPLE / name
    parse(path.read_text(), path)  # both are valid manifests
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_postgres_manifest_only_changes_the_databases() -> None:
    """corral.postgres.yaml = corral.yaml + a postgres server + `database: postgres` on
    every service that keeps data (fakepay and tracking keep none)."""
    default, postgres = _load("corral.yaml"), _load("corral.postgres.yaml")
    assert postgres.pop("databases") == {
        "postgres": {"url": "postgresql://postgres@127.0.0.1:5432/postgres"}
    }
    engines = {name: spec.pop("database", None) for name, spec in postgres["services"].items()}
    assert engines == {
        "auth": "postgres",
        "rides": "postgres",
        "matching": "postgres",
        "payments": "postgres",
        "fakepay": "none",
        "tracking": "none",
    }
    for spec in default["services"].values():
        spec.pop("database", None)
    assert postgres == default
