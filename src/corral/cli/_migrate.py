"""``corral migrate``: apply each SDK service's migrations to its own database, then exit
(the work is :mod:`corral.runtime.migrate`; this reads the secrets and prints)."""

from __future__ import annotations

import asyncio
import os
from functools import partial
from typing import Annotated

import typer

from corral.cli._common import FileOption, ManifestCommand, console, errors, load_plan
from corral.errors import CorralError
from corral.plan import ServicePlan

app = typer.Typer()


@app.command(cls=ManifestCommand)
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all).")
    ] = None,
    file: FileOption = None,
) -> None:
    """Apply each SDK service's migrations to its own database, then exit.

    The same databases `corral up` gives the services (provisioned on PostgreSQL when
    the manifest asks for it) and the same lock, so it is safe while they run."""
    # Imported here: it loads SQLAlchemy and asyncpg, which every other command would
    # pay for at start-up.
    from corral.runtime.migrate import migrate as migrate_service

    plan = load_plan(file)
    names = services or list(plan.start_order)
    unknown = [n for n in names if n not in plan.services]
    if unknown:
        raise CorralError(
            f"no service named {unknown[0]!r} (services: {', '.join(plan.start_order)})"
        )
    failed = 0
    for name in names:
        service = plan.services[name]
        done = asyncio.run(
            migrate_service(
                plan, service, environ=os.environ, secrets=partial(_secrets_of, service)
            )
        )
        if done.outcome == "migrated":
            console.print(f"[green]✔[/] {done.detail}", highlight=False)
        elif done.outcome == "skipped":
            console.print(f"[dim]- {name}: {done.detail}[/]", highlight=False)
        else:
            failed += 1
            errors.print(f"✖ {name}: {done.detail}", highlight=False, markup=False)
    if failed:
        raise CorralError(f"{failed} service(s) could not be migrated")


def _secrets_of(service: ServicePlan) -> dict[str, str]:
    """The service's secrets, read as `corral up` reads them (its settings may need them)."""
    from corral.config import read_secret

    try:
        return {key: read_secret(ref, os.environ) for key, ref in service.secrets.items()}
    except (LookupError, OSError) as exc:
        raise CorralError(f"{service.name}: cannot read a secret: {exc}") from None
