"""``corral chaos``: failure injection into a running system, through its API.

Every experiment runs in the control plane (corral.control._chaos), which also ends it:
this client only asks and prints, so an experiment expires on time even if it is killed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from corral.api import ApiClient, ApiError
from corral.chaos import (
    MAX_FAULT_SECONDS,
    ChaosExperiment,
    PreflightError,
    Report,
    Runner,
    Step,
    load,
)
from corral.cli._common import FileOption, ManifestCommand, UsageError, client, console
from corral.cli._tables import human_duration
from corral.errors import CorralError
from corral.manifest import ManifestError, parse_duration
from corral.runtime.errors import NotRunningError
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


def _fault_seconds(text: str) -> float:
    """A fault's ``--for``: a duration, at most the hour every fault is limited to."""
    seconds = _seconds(text)
    if not 0 < seconds <= MAX_FAULT_SECONDS:
        raise UsageError(
            f"invalid duration: --for {text} is {seconds:g}s; a fault lasts at most "
            f"{MAX_FAULT_SECONDS:g}s (1h)"
        )
    return seconds


For = Annotated[
    str, typer.Option("--for", help="How long, e.g. 10s or 2m (at most 1h).", show_default=True)
]


def describe(experiment: ChaosExperiment) -> str:
    """``chaos-3  pause  rides-1  SIGSTOP to process group 4242  (7s left)``."""
    remaining = experiment.remaining
    left = f"  ({human_duration(remaining)} left)" if remaining is not None else ""
    ended = f"  -> {experiment.state}" if experiment.state != "active" else ""
    outcome = f": {experiment.outcome}" if experiment.outcome else ""
    target = experiment.target
    if experiment.caller:
        target = f"{experiment.caller} -> {target}"
    return (
        f"{experiment.id}  {experiment.kind}  {target}  {experiment.detail}{left}{ended}{outcome}"
    )


def chaos_lines(status: SystemStatus) -> list[str]:
    """One ``chaos ...`` line per active experiment, for ``corral status`` (whose model,
    the runtime's, carries them as JSON: the runtime may not import corral.chaos)."""
    return [f"chaos    {describe(ChaosExperiment.model_validate(e))}" for e in status.chaos]


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
    seconds = _fault_seconds(duration)
    with client(file) as api:
        experiment = api.chaos_pause(target, seconds)
    console.print(f"[yellow]⏸[/] {describe(experiment)}", highlight=False)


@chaos_app.command("cpu", cls=ManifestCommand)
def cpu(
    target: Annotated[str, typer.Argument(help="An instance (rides-1) or a service (one of its).")],
    percent: Annotated[
        int, typer.Option(min=1, max=99, help="Share of the time it is stopped.")
    ] = 80,
    duration: For = "30s",
    file: FileOption = None,
) -> None:
    """Throttle one instance as a CPU quota does: stopped PERCENT% of every 100 ms."""
    seconds = _fault_seconds(duration)
    with client(file) as api:
        experiment = api.chaos_cpu(target, percent, seconds)
    console.print(f"[yellow]⏬[/] {describe(experiment)}", highlight=False)


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
    seconds = _fault_seconds(duration)
    with client(file) as api:
        experiment = api.chaos_gateway(
            service, percent=percent, abort_status=abort, delay_ms=delay_ms, seconds=seconds
        )
    console.print(f"[yellow]⚡[/] {describe(experiment)}", highlight=False)


@chaos_app.command("calls", cls=ManifestCommand)
def calls(
    caller: Annotated[str, typer.Argument(help="The calling service (its client injects).")],
    target: Annotated[str, typer.Argument(help="The service it calls.")],
    delay: Annotated[str | None, typer.Option(help="Delay calls, e.g. 200ms.")] = None,
    abort: Annotated[
        int | None, typer.Option(min=200, max=599, help="Answer with this status instead.")
    ] = None,
    percent: Annotated[int, typer.Option(min=1, max=100, help="Share of calls.")] = 100,
    duration: For = "30s",
    file: FileOption = None,
) -> None:
    """Abort and/or delay a share of CALLER's calls to TARGET, in the caller's own client
    (other callers are untouched); the fault ends at its expiry even if the control
    plane dies."""
    if delay is None and abort is None:
        raise UsageError("say what to inject: --abort STATUS, --delay DURATION or both")
    delay_ms = None if delay is None else max(1, round(_seconds(delay) * 1000))
    seconds = _fault_seconds(duration)
    with client(file) as api:
        experiment = api.chaos_calls(
            caller,
            target,
            percent=percent,
            abort_status=abort,
            delay_ms=delay_ms,
            seconds=seconds,
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
        runs = api.chaos_runs()
    if as_json:
        answer = data.model_dump(mode="json")
        answer["runs"] = [run.model_dump(mode="json") for run in runs]
        print(json.dumps(answer, indent=2, sort_keys=True))
        return
    if not data.active and not data.recent and not runs:
        console.print("no experiments")
    for experiment in data.active:
        console.print(describe(experiment), highlight=False)
    for experiment in data.recent:
        console.print(f"[dim]{describe(experiment)}[/]", highlight=False)
    if runs:
        console.print("runs of experiment files (newest first):")
    for run in runs:
        console.print(f"  {describe_run(run)}", highlight=False)


def describe_run(run: Report) -> str:
    """``run-1764...  held  matching paused (matching-paused.yaml): steady before...``."""
    mark = "[green]held[/]" if run.held else "[red]not held[/]"
    return f"{run.id}  {mark}  {run.title} ({Path(run.file).name}): {run.reason}"


class ApiTarget:
    """The runner's :class:`corral.chaos.Target`: the running system, through its API
    (each fault is begun by the control plane, with its duration, so it expires even if
    this process dies)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def status(self) -> SystemStatus:
        return self._api.status()

    def inject(self, step: Step) -> list[ChaosExperiment]:
        api = self._api
        target = step.target or ""
        seconds = step.duration or 0.0
        delay_ms = None if step.delay is None else max(1, round(step.delay * 1000))
        match step.action:
            case "kill":
                return [api.chaos_kill(target)]
            case "pause":
                return [api.chaos_pause(target, seconds)]
            case "cpu":
                return [api.chaos_cpu(target, step.percent, seconds)]
            case "gateway":
                return [
                    api.chaos_gateway(
                        target,
                        percent=step.percent,
                        abort_status=step.abort,
                        delay_ms=delay_ms,
                        seconds=seconds,
                    )
                ]
            case "nats":
                return [api.chaos_nats(step.mode or "", step.duration)]
            case "database":
                return [api.chaos_database(target, seconds)]
            case "calls":
                return [
                    api.chaos_calls(
                        step.caller or "",
                        target,
                        percent=step.percent,
                        abort_status=step.abort,
                        delay_ms=delay_ms,
                        seconds=seconds,
                    )
                ]
            case _:
                raise ApiError(501, "fault not available", f"{step.action!r} is not built yet")

    def stop(self, experiment_id: str) -> None:
        try:
            self._api.chaos_stop(experiment_id)
        except ApiError as exc:
            if exc.status != 404:  # over already: fine
                raise

    def summary(self, window: float) -> Mapping[str, Any]:
        return self._api.telemetry_summary(window=window)

    def event_bus(self) -> Mapping[str, Any] | None:
        try:
            return self._api.event_bus()
        except ApiError as exc:
            if exc.status == 503:
                return None  # NATS is down right now: the probe does not hold
            raise


@chaos_app.command("run", cls=ManifestCommand)
def run(
    experiment: Annotated[Path, typer.Argument(help="The experiment file (YAML).")],
    file: FileOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report (every probe's values) as JSON.")
    ] = False,
) -> None:
    """Run an experiment file: the hypothesis before, the method, the hypothesis after,
    the rollbacks. Exits 0 when the hypothesis held, 1 when it did not, 2 when the
    experiment is malformed, names what the system lacks, or no system runs there."""
    try:
        parsed = load(experiment)
    except ManifestError as exc:
        console.print(f"[red]error:[/] {exc.render()}", highlight=False)
        raise typer.Exit(2) from None
    quiet = as_json
    try:
        api = client(file)
    except NotRunningError as exc:  # nothing was run: not a verdict
        console.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    with api:
        runner = Runner(
            parsed,
            ApiTarget(api),
            file=experiment.absolute(),
            on_progress=lambda line: None if quiet else console.print(f"  {line}", highlight=False),
        )
        if not quiet:
            console.print(f"experiment: {parsed.title}", highlight=False)
        try:
            report = runner.run()
        except PreflightError as exc:
            for problem in exc.problems:
                console.print(f"[red]error:[/] {problem}", highlight=False)
            raise typer.Exit(2) from None
        try:
            report = api.chaos_record(report)
        except CorralError as exc:  # the verdict stands; say it was not kept
            print(f"warning: the run was not recorded: {exc.message}", file=sys.stderr)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.held else 1)


def _print_report(report: Report) -> None:
    for check in (report.before, report.after):
        if check is None:
            continue
        console.print(f"hypothesis {check.phase}:", highlight=False)
        for probe in check.probes:
            mark = "[green]✔[/]" if probe.held else "[red]✖[/]"
            console.print(f"  {mark} {probe.probe}: {probe.detail}", highlight=False)
    if report.during_checks:
        held = report.during_checks - report.during_failed
        console.print(
            f"hypothesis during: {held}/{report.during_checks} checks held", highlight=False
        )
    for step in [*report.steps, *report.rollbacks]:
        mark = "[green]✔[/]" if step.ok else "[red]✖[/]"
        console.print(f"  {mark} {step.step}: {step.detail}", highlight=False)
    verdict = "[green]held[/]" if report.held else "[red]not held[/]"
    console.print(f"{verdict}: {report.reason}  ({report.id})", highlight=False)


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
