"""``corral up`` and ``corral down``: run a whole system, in this terminal or in the
background, and stop it gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from corral.api import ApiClient, published
from corral.cli._common import (
    EnvOption,
    FileOption,
    ManifestCommand,
    client,
    console,
    hint,
    manifest_path,
)
from corral.cli._dashboard import login_line
from corral.cli._feed import RegistryFeed
from corral.cli._logs import colour_for, format_line
from corral.cli._progress import ChangeProgress, StartProgress, timing_lines
from corral.cli._tables import endpoints_lines
from corral.errors import CorralError
from corral.manifest import Manifest, load
from corral.plan import Plan, resolve
from corral.runtime.errors import NotRunningError
from corral.runtime.registry import InstanceRecord, Snapshot
from corral.runtime.status import SystemStatus
from corral.runtime.systems import process_alive, process_create_time

if TYPE_CHECKING:
    from corral.control import SystemSession

app = typer.Typer()

RUNTIMES = ("process", "docker", "podman")
DEFAULT_START_TIMEOUT = 120.0
"""Seconds a service's instances may take to become ready (``--timeout``)."""
RUNTIME_VARIABLE = "CORRAL_RUNTIME"


@app.command(cls=ManifestCommand)
def up(
    file: FileOption = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background.")] = False,
    no_logs: Annotated[
        bool, typer.Option("--no-logs", help="Do not follow logs once the system is ready.")
    ] = False,
    daemon: Annotated[bool, typer.Option("--daemon", hidden=True)] = False,
    env: EnvOption = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="What runs the instances: process (default), docker or podman; "
            "else CORRAL_RUNTIME, else the manifest's runtime:.",
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Reload a service when its files change (docs/watch.md)."
        ),
    ] = False,
    timings: Annotated[
        bool,
        typer.Option("--timings", help="Once ready, print where the start's time went."),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=1.0,
            help="Seconds each service's instances may take to become ready before the "
            "start fails (naming the services not ready).",
        ),
    ] = DEFAULT_START_TIMEOUT,
) -> None:
    """Start the system; Ctrl-C stops everything gracefully."""
    manifest = load(manifest_path(file), environment=env)
    plan = resolve(manifest, python=sys.executable)
    chosen = choose_runtime(runtime, plan)
    if watch:
        # Only with --watch: the file watcher is no part of a plain start's imports.
        from corral.cli._watch import require_process_runtime

        require_process_runtime(chosen)
    running = published(plan.state_dir)
    # The daemon was started by a `up -d` that checked already (and the session's lock
    # is what really keeps a second copy out).
    if running is not None and not daemon:
        raise CorralError(
            f"system {plan.system!r} is already running (pid {running.pid}): see "
            f"`{hint('status', manifest.path)}`, or stop it with `{hint('down', manifest.path)}`"
        )
    if detach:
        _up_detached(manifest, plan, env, chosen, timings=timings, timeout=timeout)
        if watch:  # the system runs on in the background; this terminal watches
            from corral.cli._watch import watch_until_signal

            with ApiClient.for_state_dir(plan.state_dir) as api:
                asyncio.run(watch_until_signal(api, manifest))
        return
    _run_system(
        manifest,
        plan,
        chosen,
        daemon=daemon,
        follow_logs=not no_logs,
        watch=watch and not daemon,
        timings=timings,
        timeout=timeout,
    )


def _run_system(
    manifest: Manifest,
    plan: Plan,
    chosen: str,
    *,
    daemon: bool,
    follow_logs: bool,
    watch: bool,
    timings: bool,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> None:
    """Run the system in this process until it is stopped (the daemon of ``up -d`` too)."""

    async def run() -> None:
        from corral.runtime.drivers import EarlyForkServers, fork_enabled
        from corral.runtime.orchestrator import startup_environment

        early = None
        if chosen == "process" and fork_enabled():
            # Begun before the control plane is imported: the fork server's imports and
            # these run on two cores at once (corral.runtime.drivers.EarlyForkServers).
            early = EarlyForkServers()
            await early.start((s, startup_environment(plan, s)) for s in plan.services.values())
        from corral.control import SystemSession, addons_for

        driver = None
        if chosen != "process":
            from corral.images import ContainerDriver

            driver = ContainerDriver(chosen, progress=lambda line: console.print(f"[dim]{line}[/]"))
        session = SystemSession(
            manifest,
            plan,
            addons=addons_for(plan),
            driver=driver,
            fork_servers=early,
            start_timeout=timeout,
        )
        await _run_foreground(
            session,
            plan,
            manifest,
            quiet=daemon,
            follow_logs=follow_logs,
            watch=watch,
            timings=timings,
        )

    try:
        asyncio.run(run())
    except Exception as exc:
        _start_failed(exc, plan)
        raise


def _start_failed(exc: Exception, plan: Plan) -> None:
    """A start that failed for a reason the person can act on: a message, not a
    traceback. Imported only now: the start imports them after its fork server began."""
    from corral.broker import BrokerError
    from corral.gateway import GatewayError
    from corral.runtime.errors import StartError

    if isinstance(exc, StartError):
        raise CorralError(f"{plan.system} could not start: {exc.details()}") from None
    if isinstance(exc, GatewayError | BrokerError):
        # Setup problems of the parts (no envoy or nats-server binary, NATS unreachable):
        # the person can fix them, so a message, not a traceback.
        raise CorralError(f"{plan.system} could not start: {exc}") from None


async def _run_foreground(
    session: SystemSession,
    plan: Plan,
    manifest: Manifest,
    *,
    quiet: bool,
    follow_logs: bool,
    watch: bool = False,
    timings: bool = False,
) -> None:
    path = manifest.path
    desired = {name: s.replicas for name, s in plan.services.items()}
    run = asyncio.create_task(session.run())
    if not quiet:
        with StartProgress(console, desired) as progress:
            # Redraw from the registry at a steady rate; a watch would redraw per change,
            # which is more work and no more information for a person.
            while not session.ready.is_set() and not run.done():
                progress.update(_user_instances(session.registry.snapshot()))
                await asyncio.wait({run}, timeout=0.05)
            progress.update(_user_instances(session.registry.snapshot()))
        if session.ready.is_set():
            status = session.status()
            if timings:
                _print_timings(status)
            for line in endpoints_lines(status):
                console.print(line, highlight=False)
            with ApiClient(str(status.api_url), session.admin_token) as own:
                # In a thread: the API answering it runs on this loop.
                console.print(await asyncio.to_thread(login_line, own), highlight=False)
            console.print(
                f"[dim]Ctrl-C stops the system; `{hint('status', path)}` in another terminal.[/]",
                highlight=False,
            )
            background = []
            stop_watching = asyncio.Event()
            watcher_api = ApiClient(str(status.api_url), session.admin_token) if watch else None
            if watcher_api is not None:
                from corral.cli._watch import watch_system

                watching = watch_system(watcher_api, manifest, stop=stop_watching)
                background.append(asyncio.create_task(watching))
            if follow_logs:
                services = list(plan.start_order)
                background.append(asyncio.create_task(_print_logs(session, services)))
            if background:
                await asyncio.wait({run})
                stop_watching.set()
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
            if watcher_api is not None:
                watcher_api.close()
    await run
    if not quiet:
        console.print(f"[green]✔[/] {plan.system} stopped")


def _user_instances(snapshot: Snapshot) -> list[InstanceRecord]:
    # The registry, not the whole status: this runs twenty times a second on the loop
    # that starts the system.
    return [record for record in snapshot.instances if not record.component]


async def _print_logs(session: SystemSession, services: list[str]) -> None:
    async for entry in session.logs.follow(None, time.time()):
        line = entry.to_json()
        console.print(
            format_line(line, colour=colour_for(str(line.get("service")), services)),
            highlight=False,
            soft_wrap=True,
        )


def choose_runtime(option: str | None, plan: Plan) -> str:
    """``--runtime``, else ``CORRAL_RUNTIME``, else the manifest's ``runtime:``."""
    chosen = option or os.environ.get(RUNTIME_VARIABLE) or plan.runtime
    if chosen not in RUNTIMES:
        where = "--runtime" if option else RUNTIME_VARIABLE
        raise CorralError(f"{where}: unknown runtime {chosen!r}; use {', '.join(RUNTIMES)}")
    return chosen


def _print_timings(status: SystemStatus, *, began: float | None = None) -> None:
    """The start-up timeline; ``began``: when this command's process began (``up -d``:
    before the control plane's)."""
    offset = 0.0
    daemon_began = process_create_time(status.pid)
    if began is not None and daemon_began is not None:
        offset = daemon_began - began
        console.print(f"  [dim]the control plane's process began {offset:.3f}s in[/]")
    for line in timing_lines(status.startup, offset=offset):
        console.print(line, highlight=False, markup=False)


class _Forked:
    """The daemon as a child of this process: what ``up -d`` asks of a ``Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._code: int | None = None

    def poll(self) -> int | None:
        if self._code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._code = os.waitstatus_to_exitcode(status)
        return self._code


def _start_daemon(
    manifest: Manifest, plan: Plan, env: str | None, runtime: str, log_path: Path, timeout: float
) -> _Forked | subprocess.Popen[bytes]:
    """The control plane in the background, in its own session, its output in
    ``log_path``. Forked from this process when it can be (no thread runs here yet):
    the child has Corral imported already, where a new ``corral up --daemon`` spent
    about a second of CPU (more under load) importing it again before anything of the
    system started. Otherwise (a host that runs this command in a process with threads)
    a new interpreter, as before."""
    if threading.active_count() == 1:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the daemon: never returns into this command
            code = 1
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                for fd, target in ((null, 0), (out, 1), (out, 2)):
                    os.dup2(fd, target)
                os.close(null)
                os.close(out)
                _run_system(
                    manifest,
                    plan,
                    runtime,
                    daemon=True,
                    follow_logs=False,
                    watch=False,
                    timings=False,
                    timeout=timeout,
                )
                code = 0
            except CorralError as exc:
                print(f"error: {exc.message}", file=sys.stderr)
                code = exc.exit_code
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        return _Forked(pid)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "corral", "up", str(manifest.path), "--daemon"),
                *(("--env", env) if env else ()),
                *("--runtime", runtime),
                *("--timeout", str(timeout)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _up_detached(
    manifest: Manifest,
    plan: Plan,
    env: str | None,
    runtime: str,
    *,
    timings: bool = False,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> None:
    manifest_path = manifest.path
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = plan.state_dir / "corral.log"
    process = _start_daemon(manifest, plan, env, runtime, log_path, timeout)
    desired = {name: s.replicas for name, s in plan.services.items()}
    api: ApiClient | None = None
    feed: RegistryFeed | None = None
    last: Snapshot | None = None
    status: SystemStatus | None = None
    polls = 0
    try:
        with StartProgress(console, desired) as progress:
            while status is None or not (status.state == "running" or progress.all_ready):
                if process.poll() is not None:
                    tail = log_path.read_text(errors="replace").splitlines()[-15:]
                    raise CorralError(f"{plan.system} could not start:\n" + "\n".join(tail))
                if api is None:
                    found = published(plan.state_dir)
                    if found is not None and found.pid == process.pid:
                        api = ApiClient(found.url, found.token)
                        feed = RegistryFeed(found.url, found.token)
                if api is None or feed is None:
                    time.sleep(0.05)
                    continue
                # Each new registry as the control plane makes it (readiness shows, and
                # the wait ends, as it happens), redrawn at least twenty times a second;
                # the whole status, which costs the starting system more, once ready or
                # every half second (a system whose services are all at 0 replicas).
                with contextlib.suppress(NotRunningError):
                    snapshot = feed.next(timeout=0.05)
                    if feed.ended and snapshot is None:  # no stream: ask, as before
                        snapshot = api.registry()
                        time.sleep(0.05)
                    last = snapshot or last
                    if last is not None:  # redrawn even unchanged: the seconds go on
                        progress.update([r for r in last.instances if not r.component])
                    if progress.all_ready or polls % 10 == 0:
                        status = api.status()
                polls += 1
    finally:
        if feed is not None:
            feed.close()
    assert api is not None
    if timings:
        _print_timings(status, began=process_create_time(os.getpid()))
    for line in endpoints_lines(status):
        console.print(line, highlight=False)
    console.print(login_line(api), highlight=False)
    console.print(
        f"[dim]running in the background (pid {process.pid}); "
        f"logs: {hint('logs', manifest_path, '-F')}; stop: {hint('down', manifest_path)}[/]",
        highlight=False,
    )


@app.command(cls=ManifestCommand)
def down(file: FileOption = None) -> None:
    """Stop a running system gracefully (reverse dependency order), showing each
    instance as it stops."""
    with client(file) as api:
        pid = api.status().pid
        progress = ChangeProgress(console, api.registry())
        api.down()
        with console.status("stopping…"):
            # The API answers until the last service has stopped; then the process ends.
            while True:
                try:
                    progress.update(api.registry())
                except NotRunningError:
                    break
                time.sleep(0.1)
            deadline = time.monotonic() + 300
            while process_alive(pid, None) and time.monotonic() < deadline:
                time.sleep(0.05)
    if process_alive(pid, None):
        raise CorralError(f"the system (pid {pid}) is still stopping; see .corral/corral.log")
    progress.all_stopped()
    console.print("[green]✔[/] stopped")
