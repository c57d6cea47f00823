"""Start-up progress: one line per service with a spinner, turning into ready and the time
it took. Built from registry snapshots, so it works the same in the foreground (watching
the in-process registry) and for ``up -d`` (polling the API)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

FAILED_STATES = frozenset({"crashloop", "failed"})


@dataclass(frozen=True)
class ServiceProgress:
    service: str
    desired: int
    ready: int
    state: str
    """waiting | starting | ready | failing"""
    seconds: float
    message: str | None = None


def service_progress(
    desired: Mapping[str, int],
    instances: Sequence[Mapping[str, Any]],
    *,
    started_at: float,
    ready_at: dict[str, float],
    now: float,
) -> list[ServiceProgress]:
    """Pure: where each service stands. ``ready_at`` remembers when each became ready."""
    rows = []
    for service, want in desired.items():
        mine = [i for i in instances if i.get("service") == service]
        ready = sum(1 for i in mine if i.get("ready") and i.get("state") == "running")
        failing = [i for i in mine if i.get("state") in FAILED_STATES]
        if ready >= want and service not in ready_at:
            ready_at[service] = now
        if service in ready_at and ready >= want:
            rows.append(
                ServiceProgress(service, want, ready, "ready", ready_at[service] - started_at)
            )
        elif failing:
            message = failing[0].get("message") or failing[0].get("state")
            rows.append(
                ServiceProgress(service, want, ready, "failing", now - started_at, str(message))
            )
        elif not mine or all(i.get("state") == "pending" for i in mine):
            rows.append(ServiceProgress(service, want, ready, "waiting", now - started_at))
        else:
            rows.append(ServiceProgress(service, want, ready, "starting", now - started_at))
    return rows


class StartProgress:
    """A live block of lines on a terminal; plain lines elsewhere (CI logs, pipes)."""

    def __init__(self, console: Console, desired: Mapping[str, int]) -> None:
        self.console = console
        self.desired = dict(desired)
        self.started_at = time.monotonic()
        self._ready_at: dict[str, float] = {}
        self._spinners = {s: Spinner("dots", style="cyan") for s in desired}
        self._printed: set[tuple[str, str]] = set()
        self._rows: list[ServiceProgress] = []
        self._live: Live | None = None
        if console.is_terminal:
            self._live = Live(console=console, refresh_per_second=12, transient=False)

    def __enter__(self) -> StartProgress:
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.update(self._render(), refresh=True)
            self._live.__exit__(None, None, None)

    def update(self, instances: Sequence[Mapping[str, Any]]) -> None:
        self._rows = service_progress(
            self.desired,
            instances,
            started_at=self.started_at,
            ready_at=self._ready_at,
            now=time.monotonic(),
        )
        if self._live:
            self._live.update(self._render())
            return
        for row in self._rows:  # plain output: print each transition once
            key = (row.service, row.state)
            if key not in self._printed and row.state in ("starting", "ready", "failing"):
                self._printed.add(key)
                self.console.print(self._line(row, spinner=None), highlight=False)

    @property
    def all_ready(self) -> bool:
        return bool(self._rows) and all(r.state == "ready" for r in self._rows)

    def _render(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        for row in self._rows:
            spinner = self._spinners[row.service] if row.state == "starting" else None
            table.add_row(self._line(row, spinner))
        return Group(table)

    def _line(self, row: ServiceProgress, spinner: Spinner | None) -> RenderableType:
        name = f"{row.service:<20}"
        count = f"{row.ready}/{row.desired}"
        if row.state == "ready":
            return Text.assemble(
                ("✔ ", "green"), (name, "bold"), (f" ready {count} in {row.seconds:.2f}s", "green")
            )
        if row.state == "failing":
            return Text.assemble(("✖ ", "red"), (name, "bold"), (f" {count} {row.message}", "red"))
        if row.state == "waiting":
            return Text.assemble(
                ("… ", "dim"), (name, "bold"), (" waiting for dependencies", "dim")
            )
        label = Text.assemble((name, "bold"), (f" starting {count} {row.seconds:.1f}s", "cyan"))
        if spinner is None:
            return Text.assemble(("• ", "cyan"), label)
        table = Table.grid(padding=(0, 1))
        table.add_row(spinner, label)
        return table
