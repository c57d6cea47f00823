"""``corral validate`` and ``corral lint``: check a manifest without running anything.

``validate`` is about the manifest being usable (schema, references, what Envoy would
reject); ``lint`` about the architecture it describes (rules in docs/lint.md, the logic in
:mod:`corral.lint`).
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from corral.cli._common import EnvOption, FileOption, ManifestCommand, console, manifest_path
from corral.errors import CorralError
from corral.lint import DEFAULT_MAX_CALL_DEPTH, RULES, Severity, lint_target
from corral.manifest import ManifestError, load
from corral.plan import resolve

app = typer.Typer()


@app.command(cls=ManifestCommand)
def validate(file: FileOption = None, env: EnvOption = None) -> None:
    """Check a manifest (and an environment's overlay) and list every problem (exit 1 if
    any), including what Envoy would reject in the rendered gateway config."""
    manifest = load(manifest_path(file), environment=env)
    plan = resolve(manifest, python=sys.executable)
    if plan.gateway is not None:
        from corral.gateway import EnvoyNotFoundError, validate_gateway

        try:
            problems = validate_gateway(manifest, plan)
        except EnvoyNotFoundError as exc:
            raise CorralError(f"cannot validate the gateway: {exc}") from None
        if problems:
            raise ManifestError(problems)
    names = ", ".join(plan.start_order)
    console.print(
        f"[green]✔[/] {manifest.path}: system {plan.system!r}, "
        f"{len(plan.services)} services ({names})",
        highlight=False,
    )


_COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command("lint", cls=ManifestCommand)
def lint_command(
    file: FileOption = None,
    env: EnvOption = None,
    output: Annotated[
        Format, typer.Option("--format", help="text for people, json for tools.")
    ] = Format.TEXT,
    strict: Annotated[bool, typer.Option(help="Warnings fail too (exit 1).")] = False,
    max_call_depth: Annotated[
        int, typer.Option(min=1, help="Synchronous hops one request may take.")
    ] = DEFAULT_MAX_CALL_DEPTH,
    rules: Annotated[bool, typer.Option("--rules", help="List every rule and exit.")] = False,
) -> None:
    """Check the architecture a manifest describes (call cycles and depth, idle topics,
    unreachable services, calls without resilience, shared databases...). Exit 1 on
    errors, 0 on warnings unless --strict. Rules: docs/lint.md."""
    if rules:
        for rule in RULES:
            console.print(
                f"{rule.id}  {rule.name:<26} {rule.severity:<8} {rule.summary}", highlight=False
            )
        return
    report = lint_target(file, environment=env, max_call_depth=max_call_depth)
    if output is Format.JSON:
        print(json.dumps(report.to_json(), indent=2))
        raise typer.Exit(report.exit_code(strict=strict))
    # Paths under the current folder are shown relative, as `corral validate` shows them.
    here = f"{Path.cwd()}{os.sep}"
    for finding in report.findings:
        colour = _COLOURS[finding.severity]
        console.print(
            f"[{colour}]{escape(str(finding).replace(here, ''))}[/]",
            highlight=False,
            soft_wrap=True,
        )
    if report.findings:
        console.print(escape(report.summary().replace(here, "")), highlight=False)
    else:
        silenced = f" ({report.silenced} silenced)" if report.silenced else ""
        console.print(
            f"[green]✔[/] {escape(report.file.replace(here, ''))}: no problems{silenced}",
            highlight=False,
        )
    raise typer.Exit(report.exit_code(strict=strict))
