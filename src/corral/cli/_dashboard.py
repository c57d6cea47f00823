"""``corral dashboard`` (a login link to the dashboard) and ``corral top`` (RED of every
service in the terminal, refreshed). Both read the control-plane API."""

from __future__ import annotations

import time
import webbrowser
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.api import ApiClient
from corral.cli._common import FileOption, ManifestCommand, client, console

app = typer.Typer()


def login_line(client: ApiClient) -> str:
    """``dashboard  <url>`` with a fresh one-time login token (good for five minutes)."""
    return f"dashboard {client.dashboard_login()}  (one-time login link)"


@app.command(cls=ManifestCommand)
def dashboard(
    file: FileOption = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Also open it in the default browser.")
    ] = False,
) -> None:
    """Print a one-time login link to the dashboard (served by the running system)."""
    with client(file) as api:
        url = api.dashboard_login()
    console.print(url, highlight=False, soft_wrap=True)
    console.print(
        "[dim]the link logs one browser in once, within five minutes; run this again for another[/]"
    )
    if open_browser and not webbrowser.open(url):
        console.print("[yellow]no browser could be opened here; open the link yourself[/]")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def top_table(summary: dict[str, Any]) -> Table:
    """One row per service (and the gateway): req/s, 5xx, p50/p95/p99, CPU, in flight."""
    window = summary.get("window", 60)
    table = Table(title=f"RED over the last {window:g}s", title_justify="left")
    for column in ("service", "req/s", "5xx", "p50 ms", "p95 ms", "p99 ms", "cpu", "in flight"):
        table.add_column(column, justify="left" if column == "service" else "right")
    rows = list(summary.get("services", []))
    if summary.get("gateway"):
        rows.insert(0, {**summary["gateway"], "service": "gateway"})
    for row in rows:
        errors = int(row.get("errors") or 0)
        table.add_row(
            str(row.get("service")),
            f"{row.get('rate', 0):.2f}",
            Text(str(errors), style="red" if errors else ""),
            _ms(row.get("p50")),
            _ms(row.get("p95")),
            _ms(row.get("p99")),
            f"{100 * float(row.get('cpu') or 0):.1f}%",
            str(row.get("in_flight", 0)),
        )
    return table


@app.command(cls=ManifestCommand)
def top(
    file: FileOption = None,
    window: Annotated[float, typer.Option(help="Seconds the numbers cover.")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Print once and exit.")] = False,
) -> None:
    """Request rate, errors and latency of every service, refreshed every two seconds."""
    with client(file) as api:
        if once:
            console.print(top_table(api.telemetry_summary(window=window)))
            return
        with Live(console=console, auto_refresh=False) as live:
            try:
                while True:
                    live.update(top_table(api.telemetry_summary(window=window)), refresh=True)
                    time.sleep(2.0)
            except KeyboardInterrupt:
                pass
