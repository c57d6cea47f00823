"""What every command shares: the consoles, the manifest options, and how a command finds
its manifest and the system running from it.

The one convention: every command takes the manifest (a file, or a folder holding
``corral.yaml``; default ``./corral.yaml``) either with ``-f/--file`` or as its first
argument. A command with no arguments of its own takes any first argument as the
manifest (``corral status examples/ridehail``); one that has its own (``corral restart
SERVICE``) takes it only when it reads as a path (``corral restart examples/ridehail
rides``), so a service name is never mistaken for a folder. A command that talks to a
running system also accepts the system's name as listed by ``corral ls``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperOption

from corral.api import ApiClient
from corral.errors import CorralError
from corral.manifest import DEFAULT_FILENAME, load, resolve_path
from corral.plan import STATE_DIRNAME, Plan, resolve
from corral.runtime.errors import NotRunningError
from corral.runtime.systems import SystemsIndex

# Piped output (scripts, CI logs) gets a wide fixed width instead of rich's 80 columns,
# so tables and diagnostics are not cut or folded.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class UsageError(CorralError):
    """A malformed command line (a value the options cannot check): exit 2."""

    exit_code = 2


FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        envvar="CORRAL_FILE",
        help="Manifest file or its folder (default: ./corral.yaml); may also be given as "
        "the first argument.",
        show_default=False,
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        envvar="CORRAL_ENV",
        help="Environment: merge the overlay corral.<env>.yaml over the manifest.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON, for scripts.")]


# --- the manifest as an argument ------------------------------------------------------


def reads_as_manifest(value: str) -> bool:
    """A path, not a name: has a slash, ends in .yaml/.yml, is . or .., or is a folder
    holding a corral.yaml (service and instance names never do any of these)."""
    return (
        value in (".", "..")
        or "/" in value
        or os.sep in value
        or value.endswith((".yaml", ".yml"))
        or (Path(value) / DEFAULT_FILENAME).is_file()
    )


class ManifestCommand(TyperCommand):
    """A command that takes its manifest with ``-f/--file`` or as its first argument.

    The first argument is moved to ``--file`` before click parses the line, so the
    command's own arguments keep their types and help. Finding it needs to know which
    options take a value (``-m MESSAGE``), which the command's own parameters say.

    (``ctx`` is typed ``Any``: its class is the click that typer vendors privately.)"""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        options, *arguments = super().collect_usage_pieces(ctx)
        return [options, "[MANIFEST]", *arguments]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        manifest, rest = self.split_manifest(args)
        if manifest is not None:
            if self._file_given(rest):
                raise typer.BadParameter(
                    f"given twice: {manifest!r} and -f/--file", ctx, param_hint="MANIFEST"
                )
            # Options first: anything after a `--` would be read as an argument.
            args = ["--file", manifest, *rest]
        return super().parse_args(ctx, args)

    def split_manifest(self, args: list[str]) -> tuple[str | None, list[str]]:
        """``(manifest, the other words)`` when the first argument is the manifest, else
        ``(None, args)``."""
        positions = self._arguments(args)
        if not positions:
            return None, args
        index = positions[0]
        value = args[index]
        own = [p for p in self.params if isinstance(p, TyperArgument)]
        # Words that the command's own required arguments need are never the manifest:
        # `chaos run EXPERIMENT.yaml -f SYS` is an experiment, not a manifest given twice.
        if len(positions) <= sum(1 for p in own if p.required):
            return None, args
        if own and not reads_as_manifest(value):
            return None, args
        return value, [*args[:index], *args[index + 1 :]]

    def _arguments(self, args: list[str]) -> list[int]:
        """The indexes of the positional words of ``args`` (option values skipped)."""
        takes_value = {
            name: not (param.is_flag or param.count)
            for param in self.params
            if isinstance(param, TyperOption)
            for name in (*param.opts, *param.secondary_opts)
        }
        found: list[int] = []
        index = 0
        while index < len(args):
            word = args[index]
            if word == "--":
                return found + list(range(index + 1, len(args)))
            if word.startswith("-") and word != "-":
                # `--opt=value` and `-fVALUE` carry their value; unknown options are
                # left for click to refuse.
                index += 2 if takes_value.get(word, False) else 1
                continue
            found.append(index)
            index += 1
        return found

    @staticmethod
    def _file_given(args: list[str]) -> bool:
        for word in args:
            if word == "--":
                return False
            if word in ("-f", "--file") or word.startswith("--file="):
                return True
            if word.startswith("-f") and not word.startswith("--"):  # -fPATH
                return True
        return False


# --- finding the manifest and the running system --------------------------------------


def manifest_path(target: Path | None) -> Path:
    """The manifest file a command means (absolute), or the manifest of the running
    system with that name when ``target`` names no file or folder."""
    if target is not None and not target.exists() and reads_as_name(str(target)):
        for system in SystemsIndex().running():
            if system.system == str(target):
                return Path(system.manifest)
    return resolve_path(target)


def reads_as_name(value: str) -> bool:
    return bool(value) and not reads_as_manifest(value)


def load_plan(target: Path | None, environment: str | None = None) -> Plan:
    manifest = load(manifest_path(target), environment=environment or os.environ.get("CORRAL_ENV"))
    return resolve(manifest, python=sys.executable)


def state_dir(target: Path | None) -> Path:
    return manifest_path(target).parent / STATE_DIRNAME


def client(target: Path | None) -> ApiClient:
    """The API client of the system running from ``target``'s manifest."""
    try:
        return ApiClient.for_state_dir(state_dir(target))
    except NotRunningError:
        raise NotRunningError(
            f"no system is running for {manifest_path(target)} "
            f"(start it with `{hint('up', target)}`)"
        ) from None


def shown_manifest(path: Path) -> str:
    """How a hint names a manifest: its folder when it has the default name."""
    return str(path.parent if path.name == DEFAULT_FILENAME else path)


def hint(command: str, target: Path | None, *extra: str) -> str:
    """A command line to suggest, naming the manifest by its real path, so it works
    from any directory: ``corral logs /srv/shop -F``."""
    where = shown_manifest(manifest_path(target))
    return shlex.join(["corral", *command.split(), where, *extra])
