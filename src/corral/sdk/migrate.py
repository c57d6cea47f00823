"""``python -m corral.sdk.migrate module:svc``: apply a service's migrations, then exit.

The same code path as start-up (the same lock, so it is safe while replicas run), for
operators who migrate before a deploy rather than at start. Exit codes as ``serve``:
0 done, 2 bad settings or target, 3 the migration failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from corral.sdk._service import Service
from corral.sdk.serve import EXIT_CONFIG, load_configured

EXIT_FAILED = 3


async def migrate(service: Service[Any]) -> str:
    """Apply ``service``'s schema; returns what was done, for people."""
    if not service.uses_database:
        return "no database"
    if not service.db.manages_schema:
        return "no migrations or metadata to apply"
    url = service.runtime.database_url
    assert url is not None  # load_settings requires it when the service uses a database
    await service.db.start(url.get_secret_value())
    try:
        return await service.db.check_schema()
    finally:
        await service.db.stop()


def run(target: str | Service[Any]) -> int:
    service = load_configured(target, command="migrate")
    if service is None:
        return EXIT_CONFIG
    try:
        outcome = asyncio.run(migrate(service))
    except Exception as exc:
        print(f"corral migrate: {service.name}: migration failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{service.name}: {outcome}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m corral.sdk.migrate",
        description="Apply a corral.sdk Service's migrations (DATABASE_URL from the env).",
    )
    parser.add_argument("target", help="module:attribute of the Service, e.g. rides.app:svc")
    return run(parser.parse_args(argv).target)


if __name__ == "__main__":
    sys.exit(main())
