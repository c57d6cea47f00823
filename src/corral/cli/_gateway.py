"""``corral gateway routes``: the Envoy gateway's live route table."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from corral.cli._common import FileOption, ManifestCommand, client, console
from corral.cli._tables import cell
from corral.errors import CorralError

app = typer.Typer(help="The Envoy API gateway.", no_args_is_help=True)


@app.command("routes", cls=ManifestCommand)
def routes(
    file: FileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The raw route list.")] = False,
) -> None:
    """The route table Envoy is serving right now (read from its admin API)."""
    import httpx

    from corral.gateway import live_routes

    with client(file) as api:
        admin = api.status().gateway_admin_socket
    if not admin:
        raise CorralError("this system has no gateway (no `gateway:` section in the manifest)")
    try:
        found = live_routes(admin)
    except httpx.HTTPError as exc:
        raise CorralError(f"cannot read the gateway's routes from {admin}: {exc}") from None
    if as_json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return
    table = Table(title="gateway routes (live, in match order)", title_justify="left")
    columns = ("match", "methods", "host", "service", "rewrite", "timeout", "auth")
    for column in columns:
        table.add_column(column)
    for route in found:
        table.add_row(*(cell(route.get(column)) for column in columns))
    console.print(table)
