"""Several replicas' handles on one service database, each with its own connection pool
(as separate processes have), on SQLite or on a scratch PostgreSQL database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from scratch_postgres import scratch_database
from sqlalchemy import MetaData

from corral.sdk import Database


@contextlib.asynccontextmanager
async def replica_databases(
    kind: str, tmp_path: Path, metadata: MetaData, *, name: str, count: int = 4
) -> AsyncIterator[list[Database]]:
    """``count`` started databases over one ``kind`` ("sqlite" or "postgres") database."""
    databases = [Database(metadata=metadata) for _ in range(count)]
    async with contextlib.AsyncExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'{name}.db'}"
        else:
            url = await stack.enter_async_context(scratch_database(f"ridehail_{name}"))
        try:
            for db in databases:
                await db.start(url)
            yield databases
        finally:
            for db in databases:
                await db.stop()
