"""`corral chaos` refuses a malformed command before asking any system (no system runs
here: a command that got as far as the API would say so instead)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.cli._common import UsageError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gateway", "web"], "say what to inject"),
        (["stop"], "name one experiment, or say --all"),
        (["stop", "chaos-1", "--all"], "name one experiment, or say --all"),
    ],
)
def test_usage_mistakes_are_user_errors(tmp_path: Path, args: list[str], message: str) -> None:
    """Nothing to inject, or no experiment (or both an id and --all) to stop."""
    result = CliRunner().invoke(app, ["chaos", *args, "-f", str(tmp_path)])
    assert isinstance(result.exception, UsageError)
    assert message in str(result.exception)


@pytest.mark.parametrize(
    "args",
    [
        ["pause", "web-1", "--for", "ten seconds"],
        ["gateway", "web", "--delay", "soon", "--abort", "503"],
        ["gateway", "web", "--abort", "99"],
        ["gateway", "web", "--abort", "503", "--percent", "0"],
    ],
)
def test_bad_values_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    """A duration that is not one, a status or percentage out of range: exit 2."""
    result = CliRunner().invoke(app, ["chaos", *args, "-f", str(tmp_path)])
    assert result.exit_code == 2, result.output
