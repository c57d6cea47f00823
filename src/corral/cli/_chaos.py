"""``corral chaos``: failure injection into a running system, through its API.

Every experiment runs in the control plane (corral.control._chaos), which also ends it:
this client only asks and prints, so an experiment expires on time even if it is killed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from corral.cli._common import FileOption, ManifestCommand, UsageError, client, console
from corral.cli._tables import human_duration
from corral.manifest import parse_duration
from corral.runtime.status import SystemStatus

chaos_app = typer.Typer(
    help="Inject failures into a running system (every experiment expires by itself).",
    no_args_is_help=True,
)


def _seconds(text: str) -> float:
    """``10s``, ``500ms``, ``2m`` -> seconds (a usage error, not a traceback, if wrong)."""
    try:
        return float(parse_duration(text))
    except Exception:
        raise typer.BadParameter(f"{text!r} is not a duration such as 500ms, 10s or 2m") from None


For = Annotated[
    str, typer.Option("--for", help="How long, e.g. 10s or 2m (at most 1h).", show_default=True)
]


def describe(experiment: Mapping[str, Any]) -> str:
    """``chaos-3  pause  rides-1  SIGSTOP to process group 4242  (7s left)``."""
    remaining = experiment.get("remaining")
    left = f"  ({human_duration(remaining)} left)" if remaining is not None else ""
    ended = f"  -> {experiment['state']}" if experiment.get("state") != "active" else ""
    outcome = f": {experiment['outcome']}" if experiment.get("outcome") else ""
    return (
        f"{experiment['id']}  {experiment['kind']}  {experiment['target']}  "
        f"{experiment['detail']}{left}{ended}{outcome}"
    )


def chaos_lines(status: SystemStatus) -> list[str]:
    """One ``chaos ...`` line per active experiment, for ``corral status``."""
    return [f"chaos    {describe(e)}" for e in status.chaos]


@chaos_app.command("kill", cls=ManifestCommand)
def kill(
    target: Annotated[str, typer.Argument(help="An instance (rides-1) or a service (one of its).")],
    file: FileOption = None,
) -> None:
    """SIGKILL one instance, as a crash; the supervisor replaces it."""
    with client(file) as api:
        experiment = api.chaos_kill(target)
    console.print(f"[red]✖[/] {describe(experiment)}", highlight=False)


@chaos_app.command("pause", cls=ManifestCommand)
def pause(
    target: Annotated[str, typer.Argument(help="An instance (rides-1) or a service (one of its).")],
    duration: For = "10s",
    file: FileOption = None,
) -> None:
    """SIGSTOP one instance (a hang: checks time out, it leaves traffic), SIGCONT after."""
    seconds = _seconds(duration)
    with client(file) as api:
        experiment = api.chaos_pause(target, seconds)
    console.print(f"[yellow]⏸[/] {describe(experiment)}", highlight=False)


@chaos_app.command("gateway", cls=ManifestCommand)
def gateway(
    service: Annotated[str, typer.Argument(help="The service whose gateway routes fail.")],
    delay: Annotated[str | None, typer.Option(help="Delay requests, e.g. 200ms.")] = None,
    abort: Annotated[
        int | None, typer.Option(min=200, max=599, help="Answer with this status instead.")
    ] = None,
    percent: Annotated[int, typer.Option(min=1, max=100, help="Share of requests.")] = 100,
    duration: For = "60s",
    file: FileOption = None,
) -> None:
    """Abort and/or delay a share of the gateway's requests to a service (Envoy's fault
    filter, switched live)."""
    if delay is None and abort is None:
        raise UsageError("say what to inject: --abort STATUS, --delay DURATION or both")
    delay_ms = None if delay is None else max(1, round(_seconds(delay) * 1000))
    seconds = _seconds(duration)
    with client(file) as api:
        experiment = api.chaos_gateway(
            service, percent=percent, abort_status=abort, delay_ms=delay_ms, seconds=seconds
        )
    console.print(f"[yellow]⚡[/] {describe(experiment)}", highlight=False)


@chaos_app.command("list", cls=ManifestCommand)
def list_experiments(
    file: FileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The raw answer.")] = False,
) -> None:
    """Active experiments, then the recently ended."""
    with client(file) as api:
        data = api.chaos()
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    if not data["active"] and not data["recent"]:
        console.print("no experiments")
    for experiment in data["active"]:
        console.print(describe(experiment), highlight=False)
    for experiment in data["recent"]:
        console.print(f"[dim]{describe(experiment)}[/]", highlight=False)


@chaos_app.command("stop", cls=ManifestCommand)
def stop(
    experiment: Annotated[str | None, typer.Argument(help="The experiment's id.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every active experiment.")] = False,
    file: FileOption = None,
) -> None:
    """End an experiment now (pauses continue, faults clear)."""
    if (experiment is None) == (not every):
        raise UsageError("name one experiment, or say --all")
    with client(file) as api:
        stopped = api.chaos_stop(experiment)
    if not stopped:
        console.print("no active experiments")
    for item in stopped:
        console.print(f"[green]✔[/] {describe(item)}", highlight=False)
