"""Progress drawn from registry snapshots, so it is the same whoever asks:

- start-up (``up``): one line per service with a spinner, turning into ready and the time
  it took; the foreground watches the in-process registry, ``up -d`` polls the API;
- changes (``scale``, ``restart --rolling``, ``start``, ``stop``, ``down``, config
  rollouts): one line per instance as it starts, becomes ready, drains, stops, crashes,
  printed while the API call that made the change is still running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from corral.api import ApiClient
from corral.runtime.errors import NotRunningError
from corral.runtime.registry import InstanceRecord, InstanceState, Snapshot
from corral.runtime.timeline import Phase

FAILED_STATES = frozenset({InstanceState.CRASHLOOP, InstanceState.FAILED})


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
    instances: Sequence[InstanceRecord],
    *,
    started_at: float,
    ready_at: dict[str, float],
    now: float,
) -> list[ServiceProgress]:
    """Pure: where each service stands. ``ready_at`` remembers when each became ready."""
    rows = []
    for service, want in desired.items():
        mine = [i for i in instances if i.service == service]
        ready = sum(1 for i in mine if i.serving)
        failing = [i for i in mine if i.state in FAILED_STATES]
        if ready >= want and service not in ready_at:
            ready_at[service] = now
        if service in ready_at and ready >= want:
            rows.append(
                ServiceProgress(service, want, ready, "ready", ready_at[service] - started_at)
            )
        elif failing:
            message = failing[0].message or failing[0].state
            rows.append(
                ServiceProgress(service, want, ready, "failing", now - started_at, str(message))
            )
        elif not mine or all(i.state is InstanceState.PENDING for i in mine):
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

    def update(self, instances: Sequence[InstanceRecord]) -> None:
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


def timing_lines(phases: Sequence[Phase], *, offset: float = 0.0) -> list[str]:
    """Pure: ``corral up --timings``, one line per phase: start and end in seconds since
    ``corral up`` began (``offset``: how long before the control plane's own process
    that was, under ``up -d``), how long it took, and its marks."""
    width = max((len(p.name) for p in phases), default=0)
    lines = ["start-up timings (seconds since `corral up` began):"]
    for phase in phases:
        start = phase.start + offset
        if phase.end is None:
            span = f"{start:7.3f} → {'…':>7}"
            took = "not finished"
        else:
            span = f"{start:7.3f} → {phase.end + offset:7.3f}"
            took = f"{phase.end - phase.start:6.3f}s"
        marks = ", ".join(f"{what} {when + offset:.3f}" for what, when in phase.marks.items())
        lines.append(f"  {phase.name:<{width}}  {span}  {took}" + (f"  ({marks})" if marks else ""))
    return lines


# --- changes ----------------------------------------------------------------------------


_STOPPING = frozenset({"draining", "stopping", "stopped"})
_ORDER = ("starting", "ready", "draining", "stopping", "stopped")


def phase(record: InstanceRecord, before: str | None = None) -> str:
    """What a person would call the instance's state: ``ready`` once it serves;
    ``stopped`` when it exits because it was being stopped (not a failure)."""
    if record.serving:
        return "ready"
    if record.state is InstanceState.EXITED and before in _STOPPING:
        return "stopped"
    return record.state.value


_MARK = {
    "ready": ("✔", "green"),
    "stopped": ("-", "dim"),
    "draining": ("~", "yellow"),
    "stopping": ("~", "yellow"),
    "backoff": ("✖", "red"),
    "crashloop": ("✖", "red"),
    "failed": ("✖", "red"),
    "exited": ("✖", "red"),
}
_FAILED = frozenset({"backoff", "crashloop", "failed", "exited"})

Transition = tuple[str, str, str | None]
"""(instance, phase, why: the instance's message when it failed)."""


def transitions(
    before: Mapping[str, str],
    after: Sequence[InstanceRecord],
    services: Collection[str] | None = None,
) -> tuple[list[Transition], dict[str, str]]:
    """Pure: from the phases shown so far (instance -> phase) and a new snapshot's
    records, the transitions to show and the phases now. Only ``services`` (None: all,
    Corral's own components excepted); an instance gone from the registry is
    ``stopped``. Within one snapshot, in the order a change goes (new instances start
    and become ready before old ones drain and stop), then by registry order."""
    now: dict[str, str] = {}
    out: list[Transition] = []
    for record in after:
        if services is not None and record.service not in services:
            continue
        if services is None and record.component:
            continue
        name = record.instance
        now[name] = phase(record, before.get(name))
        if before.get(name) != now[name]:
            failed = now[name] in _FAILED
            out.append((name, now[name], record.message if failed else None))
    out.extend(
        (name, "stopped", None)
        for name, was in before.items()
        if name not in now and was != "stopped"
    )

    def rank(item: Transition) -> int:
        return _ORDER.index(item[1]) if item[1] in _ORDER else len(_ORDER)

    return sorted(out, key=rank), now


class ChangeProgress:
    """Prints a line per instance transition (see :func:`transitions`)."""

    def __init__(
        self, console: Console, before: Snapshot, services: Collection[str] | None = None
    ) -> None:
        self.console = console
        self.services = services
        _, self._shown = transitions({}, before.instances, services)

    def update(self, snapshot: Snapshot) -> None:
        found, self._shown = transitions(self._shown, snapshot.instances, self.services)
        for instance, now, message in found:
            mark, style = _MARK.get(now, ("+", "cyan"))
            text = Text.assemble((f"  {mark} ", style), (f"{instance:<14}", "bold"), (now, style))
            if message:
                text.append(f": {message}", style=style)
            self.console.print(text, highlight=False)

    def all_stopped(self) -> None:
        """Every instance left has stopped (its orchestrator has exited, and no instance
        outlives it): say so for those not yet shown gone."""
        self.update(Snapshot(0, ()))


def with_progress[T](
    api: ApiClient,
    console: Console,
    call: Callable[[], T],
    *,
    doing: str,
    services: Collection[str] | None = None,
    poll: float = 0.1,
) -> T:
    """Run ``call`` (an API request that returns when its change is done) in a thread
    while this one polls the registry and prints each instance's transitions.

    Polling, not the registry's event stream: a poll is one small request, and a
    person sees no difference at ten a second; a stream would need closing from
    another thread when the change ends."""
    watcher = api.clone()
    with watcher, ThreadPoolExecutor(max_workers=1) as pool:
        progress = ChangeProgress(console, watcher.registry(), services)
        future = pool.submit(call)
        with console.status(f"{doing}…"):
            finished = False
            while not finished:
                finished = bool(wait([future], timeout=poll).done)
                try:  # once more after the change is done: it may take less than a poll
                    progress.update(watcher.registry())
                except NotRunningError:  # the system went away (`down`): nothing to show
                    break
        return future.result()
