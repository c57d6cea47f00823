"""The status table: service, instance, pid, port, state, ready, restarts, uptime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

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


def status_table(status: Mapping[str, Any]) -> Table:
    table = Table(title=f"system {status.get('system', '?')}", title_justify="left")
    for column in ("service", "instance", "pid", "port", "state", "ready", "restarts", "uptime"):
        numeric = column in ("pid", "port", "restarts", "uptime")
        table.add_column(column, justify="right" if numeric else "left")
    for record in status.get("instances", []):
        state = str(record.get("state", "?"))
        ready = record.get("ready")
        table.add_row(
            str(record.get("service", "")),
            str(record.get("instance", "")),
            str(record.get("pid") or "-"),
            str(record.get("port") or "-"),
            Text(state, style=STATE_STYLE.get(state, "")),
            Text("yes", style="green") if ready else Text("no", style="red"),
            str(record.get("restarts", 0)),
            human_duration(record.get("uptime")),
        )
    return table


def endpoints_lines(status: Mapping[str, Any]) -> list[str]:
    lines = []
    if status.get("gateway_url"):
        lines.append(f"gateway  {status['gateway_url']}")
    if status.get("api_url"):
        lines.append(f"api      {status['api_url']}  (docs: {status['api_url']}/docs)")
    if status.get("config_version"):
        runtime = status.get("config_runtime_values") or 0
        extra = f", {runtime} set at run time" if runtime else ""
        lines.append(f"config   version {status['config_version']}{extra}  (corral config show)")
    return lines


def circuit_lines(status: Mapping[str, Any]) -> list[str]:
    """``open circuit  web-1 -> api  open (retry in 4s)`` for each circuit not closed."""
    lines = []
    for circuit in status.get("open_circuits") or []:
        retry = circuit.get("retry_after")
        suffix = f" (retry in {human_duration(retry)})" if retry else ""
        lines.append(
            f"circuit  {circuit.get('instance')} -> {circuit.get('target')}  "
            f"{circuit.get('state')}{suffix}"
        )
    return lines
