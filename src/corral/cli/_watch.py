"""``corral watch``: reload a running system's services as their files are saved (what
``corral up --watch`` runs once the system is up). The watcher runs here; every reload
goes through the control API, so it works the same for ``up`` and ``up -d``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import typer

from corral.api import ApiClient
from corral.cli._common import EnvOption, FileOption, ManifestCommand, client, console
from corral.errors import CorralError
from corral.manifest import Manifest, load
from corral.plan import resolve
from corral.watch import (
    ApiTarget,
    ManifestChanged,
    Reloaded,
    ReloadFailed,
    Reloading,
    SourceMap,
    Watcher,
    WatchEvent,
    WatchProblem,
)

app = typer.Typer()


@app.command(cls=ManifestCommand)
def watch(file: FileOption = None, env: EnvOption = None) -> None:
    """Reload services of a running system as their files change (zero failed requests;
    code that cannot start leaves the old instances serving). Ctrl-C stops watching."""
    with client(file) as api:
        status = api.status()
        require_process_runtime(status.runtime)
        manifest = load(Path(status.manifest), environment=env)
        asyncio.run(watch_until_signal(api, manifest))


def require_process_runtime(runtime: str) -> None:
    """Watching reloads by starting new instances of what the system runs: under a
    container runtime that is the image built at `up`, so a saved file would never reach
    a container. Refused, rather than reloads that silently keep the old code."""
    if runtime != "process":
        raise CorralError(
            f"--watch needs the process runtime (this system runs on {runtime}: its images "
            "are built once, at `corral up`); run it with `--runtime process` to watch"
        )


async def watch_until_signal(api: ApiClient, manifest: Manifest) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await watch_system(api, manifest, stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def watch_system(api: ApiClient, manifest: Manifest, *, stop: asyncio.Event) -> None:
    """Watch ``manifest``'s services until ``stop`` is set, reloading through ``api``."""
    sources = _sources(manifest)

    def reread() -> SourceMap:
        return _sources(load(manifest.path, environment=manifest.environment))

    root = manifest.root.resolve()
    watcher = Watcher(sources, ApiTarget(api), show, root=root, reread=reread)
    console.print(
        f"[dim]watching {', '.join(_shown(r, root) for r in sources.roots)}[/]",
        highlight=False,
    )
    await watcher.run(stop)


def _sources(manifest: Manifest) -> SourceMap:
    plan = resolve(manifest, python=sys.executable)
    return SourceMap(plan, [manifest.path, *([manifest.overlay] if manifest.overlay else [])])


def show(event: WatchEvent) -> None:
    """One line per event, for people."""
    if isinstance(event, Reloading):
        for service, files in event.changes.files.items():
            what = files[0].name if len(files) == 1 else f"{len(files)} files"
            console.print(f"[cyan]↻[/] {service} ({what} changed)", highlight=False)
    elif isinstance(event, Reloaded):
        console.print(
            f"[green]✔[/] {event.service} reloaded in {event.seconds:.2f}s", highlight=False
        )
    elif isinstance(event, ReloadFailed):
        where = str(event.located) if event.located is not None else event.reason
        console.print(
            f"[red]✘[/] {event.service}: {where}\n"
            f"  [dim]the new code did not start ({event.reason}); the old instances keep "
            "serving; save again to retry[/]",
            highlight=False,
        )
    elif isinstance(event, ManifestChanged):
        outcome = event.outcome
        if outcome.error is not None:
            console.print(
                f"[red]✘[/] the manifest is invalid; the system runs on unchanged:\n"
                f"{outcome.error}",
                highlight=False,
            )
            return
        what = "; ".join(outcome.changed) or "nothing to change"
        console.print(
            f"[green]✔[/] manifest applied in {event.seconds:.2f}s: {what}", highlight=False
        )
        for failure in outcome.failed:
            console.print(f"[red]✘[/] {failure}", highlight=False)
        for note in outcome.notes:
            console.print(f"[yellow]![/] {note}", highlight=False)
    elif isinstance(event, WatchProblem):
        console.print(f"[yellow]![/] {event.message}", highlight=False)


def _shown(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(root.resolve())) or "."
    return str(path)
