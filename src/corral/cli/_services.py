"""``corral scale|restart|start|stop``: change one service of a running system.

Each change returns when it is done (new instances ready, old ones stopped); meanwhile
every instance's transition is printed, from the registry (see ``_progress``). What is
printed last is the API's own account of the change, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from corral.api import ApiClient
from corral.cli._common import FileOption, ManifestCommand, UsageError, client, console
from corral.cli._progress import with_progress
from corral.runtime.status import ChangeAction, ServiceChange

app = typer.Typer()

ServiceArgument = Annotated[str, typer.Argument(help="The service.", show_default=False)]


def _apply(
    file: Path | None, service: str, doing: str, call: Callable[[ApiClient], ServiceChange]
) -> None:
    """Make one change through the API, printing instances as they change, then the
    API's account of it."""
    with client(file) as api:
        change = with_progress(api, console, partial(call, api), doing=doing, services={service})
    mark = "[dim]=[/]" if change.action is ChangeAction.UNCHANGED else "[green]✔[/]"
    console.print(f"{mark} {change.detail}", highlight=False)


@app.command(cls=ManifestCommand)
def scale(
    assignments: Annotated[list[str], typer.Argument(help="SERVICE=N, one or more.")],
    file: FileOption = None,
) -> None:
    """Set replicas; new instances count once ready, scale-down stops the newest first."""
    wanted: list[tuple[str, int]] = []
    for item in assignments:
        service, _, text = item.partition("=")
        if not service or not text.isdigit():
            raise UsageError(f"expected SERVICE=N, got {item!r}")
        wanted.append((service, int(text)))
    for service, count in wanted:
        _apply(
            file,
            service,
            f"scaling {service} to {count}",
            partial(ApiClient.scale, service=service, replicas=count),
        )


@app.command(cls=ManifestCommand)
def restart(
    service: ServiceArgument,
    file: FileOption = None,
    rolling: Annotated[
        bool, typer.Option(help="One instance at a time; the replacement is ready first.")
    ] = False,
) -> None:
    """Restart a service's instances (a stopped service is refused: `start` it)."""
    call = partial(ApiClient.restart, service=service, rolling=rolling)
    _apply(file, service, f"restarting {service}", call)


@app.command(cls=ManifestCommand)
def start(service: ServiceArgument, file: FileOption = None) -> None:
    """Start a stopped service with as many instances as it had (a running one is left
    as it is)."""
    _apply(file, service, f"starting {service}", partial(ApiClient.start, service=service))


@app.command(cls=ManifestCommand)
def stop(service: ServiceArgument, file: FileOption = None) -> None:
    """Stop every instance of one service (the rest keeps running; `start` brings it
    back)."""
    _apply(file, service, f"stopping {service}", partial(ApiClient.stop, service=service))
