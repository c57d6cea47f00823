"""Tables and lines that show a system: the status table (service, instance, pid, port,
state, ready, restarts, uptime), its endpoints and open circuits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from corral.cli._common import hint
from corral.runtime.status import SystemStatus

STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "pending": "dim",
    "draining": "yellow",
    "stopping": "yellow",
    "backoff": "yellow",
    "crashloop": "bold red",
    "failed": "bold red",
    "exited": "dim",
}


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status_table(status: SystemStatus) -> Table:
    containers = status.runtime != "process"
    title = f"system {status.system}" + (f" ({status.runtime})" if containers else "")
    table = Table(title=title, title_justify="left")
    columns = ["service", "instance", "pid", "port", "state", "ready", "restarts", "uptime"]
    if containers:  # the container's name beside the engine client's pid
        columns.insert(3, "container")
    for column in columns:
        numeric = column in ("pid", "port", "restarts", "uptime")
        table.add_column(column, justify="right" if numeric else "left")
    for record in status.instances:
        cells = [record.service, record.instance, str(record.pid or "-")]
        if containers:
            cells.append(record.container or "-")
        table.add_row(
            *cells,
            str(record.port or "-"),
            Text(record.state, style=STATE_STYLE.get(record.state, "")),
            Text("yes", style="green") if record.ready else Text("no", style="red"),
            str(record.restarts),
            human_duration(record.uptime),
        )
    return table


def endpoints_lines(status: SystemStatus) -> list[str]:
    lines = []
    if status.gateway_url:
        lines.append(f"gateway  {status.gateway_url}")
    if status.api_url:
        lines.append(f"api      {status.api_url}  (docs: {status.api_url}/docs)")
    if status.config_version:
        runtime = status.config_runtime_values
        extra = f", {runtime} set at run time" if runtime else ""
        show = hint("config show", Path(status.manifest))
        lines.append(f"config   version {status.config_version}{extra}  ({show})")
    return lines


def circuit_lines(status: SystemStatus) -> list[str]:
    """``circuit  web-1 -> api  open (retry in 4s)`` for each circuit not closed."""
    lines = []
    for circuit in status.open_circuits:
        retry = circuit.retry_after
        suffix = f" (retry in {human_duration(retry)})" if retry else ""
        lines.append(f"circuit  {circuit.instance} -> {circuit.target}  {circuit.state}{suffix}")
    return lines


def cell(value: Any) -> str:
    """A JSON value in a table cell: text as is, ``-`` for nothing, JSON otherwise."""
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)
