"""The health checks the images and Compose run (the image's own Python, no curl) against
a real SDK service: they pass while it is ready and fail on an error answer or a closed
port, as Docker reads exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from export_helpers import free_port, serve_greeter

from corral.export._mapping import probe_command
from corral.plan import CheckKind, CheckPlan

pytestmark = pytest.mark.integration

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


@pytest.fixture(scope="module")
def service() -> Iterator[int]:
    """One real greeter for the whole module (a start costs seconds)."""
    with serve_greeter() as port:
        yield port


def _exit_code(check: CheckPlan, port: int) -> int:
    argv = probe_command(check, python=sys.executable)
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


@pytest.mark.parametrize(
    ("check", "passes"),
    [
        (CheckPlan(CheckKind.HTTP, path="/readyz"), True),
        (CheckPlan(CheckKind.HTTP, path="/healthz"), True),
        (CheckPlan(CheckKind.HTTP, path="/no-such-path"), False),
        (CheckPlan(CheckKind.TCP), True),
    ],
)
def test_probe_commands_read_the_service(check: CheckPlan, passes: bool, service: int) -> None:
    """An HTTP check passes on 2xx and fails on an error status; a TCP check passes on an
    open port."""
    assert (_exit_code(check, service) == 0) is passes


@pytest.mark.parametrize("kind", [CheckKind.HTTP, CheckKind.TCP])
def test_probe_commands_fail_on_a_closed_port(kind: CheckKind) -> None:
    """Nothing listening: both kinds of check fail (exit code not 0)."""
    check = CheckPlan(kind, path="/readyz" if kind is CheckKind.HTTP else None)
    assert _exit_code(check, free_port()) != 0
