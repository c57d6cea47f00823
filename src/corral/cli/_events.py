"""``corral events``: the event bus (NATS JetStream): its catalog and dead letters."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from corral.api import published
from corral.cli._common import (
    FileOption,
    JsonOption,
    ManifestCommand,
    client,
    console,
    load_plan,
    state_dir,
)
from corral.cli._tables import cell
from corral.errors import CorralError

app = typer.Typer(help="The event bus (NATS JetStream).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: events a service could not handle.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _bus(file: Path | None) -> tuple[str, str]:
    """(NATS URL with the control plane's credentials, system name) of the running
    system. ``corral status`` shows the bus without credentials; the embedded bus's
    control user is read from the system's own state folder (mode 0600)."""
    from corral.broker import control_url

    with client(file) as api:
        status = api.status()
    if not status.nats_url:
        raise CorralError("this system has no event bus (no `events:` section in the manifest)")
    return control_url(state_dir(file)) or status.nats_url, status.system


@app.command("catalog", cls=ManifestCommand)
def catalog(
    file: FileOption = None,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="YAML instead of JSON.")] = False,
) -> None:
    """Topics, producers, consumers and payload schemas, as an AsyncAPI 3 document."""
    from corral.broker import catalog as build_catalog

    plan = load_plan(file)
    if plan.events is None:
        raise CorralError("this manifest has no `events:` section")
    url = None
    if published(plan.state_dir) is not None:  # running: the live streams too
        url, _ = _bus(file)
    document = asyncio.run(build_catalog(url, plan.events, plan.root))
    if as_yaml:
        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump(document, sys.stdout)
    else:
        print(json.dumps(document, indent=2, sort_keys=False))


@dlq_app.command("list", cls=ManifestCommand)
def dlq_list_command(file: FileOption = None, as_json: JsonOption = False) -> None:
    """Every dead letter, oldest first."""
    from corral.broker import dlq_list

    url, system = _bus(file)
    letters = asyncio.run(dlq_list(url, system))
    if as_json:
        print(json.dumps(letters, indent=2))
        return
    if not letters:
        console.print("[green]no dead letters[/]")
        return
    table = Table(title=f"dead letters ({len(letters)})", title_justify="left")
    columns = ("seq", "service", "topic", "event_id", "deliveries", "error")
    for column in columns:
        table.add_column(column)
    for letter in letters:
        table.add_row(*(cell(letter.get(c)) for c in columns))
    console.print(table)


@dlq_app.command("show", cls=ManifestCommand)
def dlq_show_command(seq: int, file: FileOption = None) -> None:
    """One dead letter whole: the event, the error and its delivery history."""
    from corral.broker import dlq_show

    url, system = _bus(file)
    letter = asyncio.run(dlq_show(url, system, seq))
    if letter is None:
        raise CorralError(f"no dead letter with sequence {seq}")
    print(json.dumps(letter, indent=2, default=str))


@dlq_app.command("replay", cls=ManifestCommand)
def dlq_replay_command(
    seq: Annotated[int | None, typer.Argument(help="One dead letter; all when omitted.")] = None,
    file: FileOption = None,
) -> None:
    """Send dead letters back to the service that failed them (trace context kept)."""
    from corral.broker import dlq_replay

    url, system = _bus(file)
    replayed = asyncio.run(dlq_replay(url, system, seq))
    if seq is not None and not replayed:
        raise CorralError(f"no dead letter with sequence {seq}")
    console.print(f"[green]✔[/] replayed {len(replayed)} dead letter(s)")


@dlq_app.command("purge", cls=ManifestCommand)
def dlq_purge_command(
    file: FileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete every dead letter."""
    from corral.broker import dlq_purge

    url, system = _bus(file)
    if not yes and not typer.confirm("delete every dead letter?"):
        raise CorralError("nothing deleted")
    count = asyncio.run(dlq_purge(url, system))
    console.print(f"[green]✔[/] purged {count} dead letter(s)")
