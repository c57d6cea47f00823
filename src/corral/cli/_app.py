"""The ``corral`` command: the command groups assembled, and ``main``.

Thin: every command parses its arguments, then either runs a system in this process
(``up``) or calls the control-plane API of a running one. Each group of commands lives
in its own module; what they share (consoles, the manifest options, finding the running
system) is ``_common``.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from corral.cli._lazy import LazyGroup
from corral.errors import CorralError

app = typer.Typer(
    name="corral",
    help="Run a system of Python services from one manifest (corral.yaml). Every command "
    "takes the manifest as its first argument or with -f/--file (default: ./corral.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=LazyGroup,
)


def _version() -> str:
    # Here, not above: importlib.metadata costs every other command ~20 ms of imports.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corral")
    except PackageNotFoundError:  # a source tree without metadata
        return "unknown"


def _print_version(asked: bool) -> None:
    if asked:
        print(f"corral {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print corral's version and exit.",
        ),
    ] = False,
) -> None:
    """Run a system of Python services from one manifest (corral.yaml)."""


def main() -> None:
    """Entry point: user mistakes become messages and exit codes, never tracebacks."""
    try:
        app(prog_name="corral")
    except CorralError as exc:
        # Imported only now: `--version` and `--help` need neither the manifest's models
        # nor what the consoles' module brings (the API client, the plan).
        from corral.cli._common import errors
        from corral.manifest import ManifestError

        if isinstance(exc, ManifestError):
            # Paths under the current folder are shown relative, as editors do.
            text = exc.render().replace(f"{Path.cwd()}{os.sep}", "")
            errors.print(text, highlight=False, markup=False, soft_wrap=True)
            sys.exit(1)
        errors.print(f"error: {exc.message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        # The interpreter's shutdown collects cycles over every object of the ~1300
        # modules a command like `up` imports: 0.2-0.5 s of `corral up -d`'s exit on a
        # loaded machine, ~0.03 s with them frozen. Nothing is lost: refcounting still
        # frees them, and what a command must close it closes itself before this.
        gc.freeze()
