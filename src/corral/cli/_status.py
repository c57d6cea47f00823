"""``corral status`` (one system, in detail) and ``corral ls`` (every system this user
runs, one line each)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NoReturn

import typer
from pydantic import BaseModel
from rich.table import Table

from corral.api import ApiClient
from corral.cli._chaos import chaos_lines
from corral.cli._common import (
    FileOption,
    JsonOption,
    ManifestCommand,
    client,
    console,
    errors,
    shown_manifest,
)
from corral.cli._tables import circuit_lines, endpoints_lines, human_duration, status_table
from corral.errors import CorralError
from corral.manifest import DEFAULT_FILENAME
from corral.runtime.errors import NotRunningError
from corral.runtime.status import SystemStatus
from corral.runtime.systems import RunningSystem, SystemsIndex

app = typer.Typer()


@app.command(cls=ManifestCommand)
def status(file: FileOption = None, as_json: JsonOption = False) -> None:
    """Instances with pid, port, state, readiness, restarts and uptime; the endpoints;
    open circuits and active experiments. Without a manifest here, what is running."""
    if file is None and not (Path.cwd() / DEFAULT_FILENAME).exists():
        _not_here(f"no {DEFAULT_FILENAME} in {Path.cwd()}: name a manifest or a running system")
    try:
        api = client(file)
    except NotRunningError as exc:
        _not_here(exc.message)
    with api:
        data = api.status()
    if as_json:
        print(data.model_dump_json(indent=2))
        return
    console.print(status_table(data))
    for line in endpoints_lines(data):
        console.print(line, highlight=False)
    for line in circuit_lines(data):
        console.print(f"[red]{line}[/]", highlight=False)
    for line in chaos_lines(data):
        console.print(f"[yellow]{line}[/]", highlight=False)
    for line in autoscale_lines(data):
        console.print(line, highlight=False)


def autoscale_lines(data: SystemStatus) -> list[str]:
    """One line per autoscaled service: its bounds and the latest decision's reason."""
    policies = getattr(data, "autoscale", None) or {}
    return [
        f"autoscale {name} [{p['min']}-{p['max']}] {p['metric']}: {p.get('reason') or 'waiting'}"
        for name, p in sorted(policies.items())
    ]


def _not_here(message: str) -> NoReturn:
    """Say why there is no status to show, then what is running instead; exit 1."""
    errors.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    systems = [_summary(entry) for entry in SystemsIndex().running()]
    if systems:
        console.print(systems_table(systems, title="running systems"))
    else:
        console.print("no system is running")
    raise typer.Exit(1)


class SystemSummary(BaseModel):
    """One line of ``corral ls``."""

    system: str
    manifest: str
    pid: int
    uptime: float | None
    state: str
    """The system's state, or ``not answering`` when its API does not."""
    ready: int | None = None
    total: int | None = None
    gateway_url: str | None = None
    dashboard_url: str | None = None


def _summary(entry: RunningSystem) -> SystemSummary:
    uptime = time.time() - entry.started_at if entry.started_at else None
    summary = SystemSummary(
        system=entry.system,
        manifest=entry.manifest,
        pid=entry.pid,
        uptime=uptime,
        state="not answering",
    )
    try:
        # A short timeout: one system that hangs must not hang the list.
        with ApiClient.for_state_dir(Path(entry.state_dir), timeout=2.0) as api:
            status = api.status()
    except CorralError:
        return summary
    instances = status.user_instances
    return summary.model_copy(
        update={
            "state": status.state,
            "ready": sum(1 for r in instances if r.serving),
            "total": len(instances),
            "gateway_url": status.gateway_url,
            "dashboard_url": status.dashboard_url,
        }
    )


def systems_table(systems: list[SystemSummary], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("system", "manifest", "uptime", "ready", "gateway", "dashboard"):
        table.add_column(column, justify="right" if column in ("uptime", "ready") else "left")
    for row in systems:
        ready = f"{row.ready}/{row.total}" if row.total is not None else row.state
        table.add_row(
            row.system,
            shown_manifest(Path(row.manifest)),
            human_duration(row.uptime),
            ready,
            row.gateway_url or "-",
            row.dashboard_url or "-",
        )
    return table


@app.command("ls")
def ls(as_json: JsonOption = False) -> None:
    """Every system you are running, from any folder: name, manifest, uptime, instances
    ready/total, gateway and dashboard. `corral status NAME` shows one in detail."""
    systems = [_summary(entry) for entry in SystemsIndex().running()]
    if as_json:
        print("[" + ",".join(s.model_dump_json() for s in systems) + "]")
        return
    if not systems:
        console.print("no system is running")
        return
    console.print(systems_table(systems, title="running systems"))
