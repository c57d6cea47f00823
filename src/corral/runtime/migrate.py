"""Apply an SDK service's migrations to its own database, then exit (``corral migrate``).

The migration runs as a process of its own, with the environment ``corral up`` would
give an instance of the service (its database, provisioned on PostgreSQL when the
manifest asks for it, its configuration and secrets), under the lock the services take
for their migrations, so it is safe while they run. Secrets are read by the caller (the
configuration layer, which the runtime does not import) and passed in.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from corral.plan import Endpoints, Plan, ServicePlan, instance_environment
from corral.runtime.databases import DatabaseSetupError, service_database_url
from corral.runtime.orchestrator import CONTROL_PLANE_SECRETS


@dataclass(frozen=True)
class Migration:
    """What migrating one service did; ``detail`` is the migration's own words."""

    service: str
    outcome: Literal["migrated", "skipped", "failed"]
    detail: str


def migration_environment(
    plan: Plan,
    service: ServicePlan,
    *,
    database_url: str,
    environ: Mapping[str, str],
    secrets: Mapping[str, str],
) -> dict[str, str]:
    """An instance's environment for the migration (never the control plane's secrets)."""
    return {
        **{key: value for key, value in environ.items() if key not in CONTROL_PLANE_SECRETS},
        **instance_environment(
            plan,
            service,
            instance=f"{service.name}-migrate",
            port=0,
            endpoints=Endpoints(),
            database_url=database_url,
        ),
        **secrets,
    }


async def migrate(
    plan: Plan,
    service: ServicePlan,
    *,
    environ: Mapping[str, str],
    secrets: Callable[[], Mapping[str, str]],
) -> Migration:
    """Migrate ``service``'s database; services that are not SDK apps, or have no
    database, are skipped (with why). ``secrets`` reads the service's secrets, only
    when there is a migration to run."""
    if service.app is None:
        return Migration(service.name, "skipped", "not a corral.sdk app (migrate it yourself)")
    try:
        url = await service_database_url(plan, service, environ)
    except DatabaseSetupError as exc:
        return Migration(service.name, "failed", str(exc))
    if url is None:
        return Migration(service.name, "skipped", "no database")
    env = migration_environment(plan, service, database_url=url, environ=environ, secrets=secrets())
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "corral.sdk.migrate", service.app),
        cwd=service.workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode == 0:
        return Migration(service.name, "migrated", out.decode(errors="replace").strip())
    return Migration(service.name, "failed", err.decode(errors="replace").strip())


__all__ = ["Migration", "migrate", "migration_environment"]
