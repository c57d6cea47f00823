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
from corral.manifest import Manifest, load
from corral.plan import resolve
from corral.watch import (
    ApiTarget,
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
        manifest = load(Path(api.status().manifest), environment=env)
        asyncio.run(watch_until_signal(api, manifest))


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
    plan = resolve(manifest, python=sys.executable)
    manifests = [manifest.path, *([manifest.overlay] if manifest.overlay else [])]
    sources = SourceMap(plan, manifests)
    watcher = Watcher(sources, ApiTarget(api), show, root=plan.root.resolve())
    console.print(
        f"[dim]watching {', '.join(_shown(r, plan.root) for r in sources.roots)}[/]",
        highlight=False,
    )
    await watcher.run(stop)


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
    elif isinstance(event, WatchProblem):
        console.print(f"[yellow]![/] {event.message}", highlight=False)


def _shown(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(root.resolve())) or "."
    return str(path)
