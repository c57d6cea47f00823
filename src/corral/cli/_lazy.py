"""The root group, importing a command's module only when that command is used.

Every command module pulls in what its commands need (the API client, the chaos and
configuration models, the telemetry store...). Importing all of them cost ``corral up``
over a second before it read the manifest, so the root knows its commands by name
(``COMMANDS``) and imports a module the first time one of its commands is asked for:
``corral up`` imports ``_up`` only, while ``corral --help``, completion and the "did you
mean" suggestions, which ask for every command, import them all. This is click's
documented lazy-loading pattern ("Lazily Loading Subcommands"), with the commands kept in
a mapping so typer's own ``TyperGroup`` (order, suggestions, help) works unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import typer
from typer.core import TyperGroup

COMMANDS: dict[str, tuple[str, str, bool]] = {
    # name: (module under corral.cli, its typer attribute, a named group of commands)
    # In the order `corral --help` lists them: the loop of a day's work first.
    "validate": ("_checks", "app", False),
    "lint": ("_checks", "app", False),
    "up": ("_up", "app", False),
    "down": ("_up", "app", False),
    "watch": ("_watch", "app", False),
    "status": ("_status", "app", False),
    "ls": ("_status", "app", False),
    "logs": ("_logs", "app", False),
    "traces": ("_traces", "app", False),
    "scale": ("_services", "app", False),
    "restart": ("_services", "app", False),
    "start": ("_services", "app", False),
    "stop": ("_services", "app", False),
    "migrate": ("_migrate", "app", False),
    "dashboard": ("_dashboard", "app", False),
    "top": ("_dashboard", "app", False),
    "export": ("_export", "app", False),
    "serve": ("_serve", "app", False),
    "gateway": ("_gateway", "app", True),
    "events": ("_events", "app", True),
    "chaos": ("_chaos", "chaos_app", True),
    "config": ("_config", "config_app", True),
}


def load_command(name: str) -> Any:
    """The click command ``name`` of :data:`COMMANDS`, its module imported now."""
    module, attribute, named = COMMANDS[name]
    commands: typer.Typer = getattr(importlib.import_module(f"corral.cli.{module}"), attribute)
    # Through a typer of its own, so the command is built exactly as `add_typer` on the
    # root would build it (a named group keeps its help and no_args_is_help).
    holder = typer.Typer(rich_markup_mode=None)  # as the root's: plain help
    holder.add_typer(commands, name=name if named else None)
    return typer.main.get_group(holder).commands[name]


class _Commands(Mapping[str, Any]):
    # (Commands are ``Any``: their class is the click that typer vendors privately.)
    """The root's ``commands``: every name known up front, each built when first read."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = load_command(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class LazyGroup(TyperGroup):
    """The root ``corral`` group, its commands from :data:`COMMANDS`, loaded on use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands()  # type: ignore[assignment]
