"""``corral serve``: what `app:` services run (one corral.sdk service, no manifest)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer()


@app.command()
def serve(
    target: Annotated[str, typer.Argument(help="module:attribute of a corral.sdk Service")],
) -> None:
    """Serve a corral.sdk service (what `app:` services run; HOST/PORT from the env)."""
    from corral.sdk.serve import run

    run(target)
