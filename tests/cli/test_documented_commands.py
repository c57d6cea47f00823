"""Every `corral ...` command shown in the README and the docs parses.

A command a reader copies must at least be accepted by the CLI: an option in the wrong
place (`corral events -f DIR dlq list`) or a renamed flag fails here, not in a user's
terminal. Only parsing is checked: each command runs with `--help` appended, which click
honours after parsing every token (an unknown option still fails) and before running.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "examples").glob("*/README.md")),
]
# A shell line in a fenced block, with or without a prompt and `uv run`.
COMMAND = re.compile(r"^(?:\$ )?(?:uv run )?corral (?P<args>.*)$")


def documented_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for document in DOCUMENTS:
        fenced = False
        for number, line in enumerate(document.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            match = COMMAND.match(line.strip()) if fenced else None
            if match is None:
                continue
            args = shlex.split(match["args"], comments=True)
            found.append((f"{document.relative_to(ROOT)}:{number}", args))
    return found


COMMANDS = documented_commands()


def parse(args: list[str]) -> str | None:
    """None when the CLI accepts the command line, else what it said."""
    result = CliRunner().invoke(app, [*args, "--help"])
    return None if result.exit_code == 0 else result.output.strip() or repr(result.exception)


def test_the_documents_show_commands() -> None:
    """The scan finds the README's quickstart (so an empty scan cannot pass)."""
    places = {where.split(":")[0] for where, _ in COMMANDS}
    assert "README.md" in places
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where: str, args: list[str]) -> None:
    problem = parse(args)
    assert problem is None, f"{where}: `corral {shlex.join(args)}` does not parse: {problem}"


def test_a_misplaced_option_is_caught() -> None:
    """The check can fail: the README once had `-f` before the subcommand."""
    assert "No such option: -f" in (parse(["events", "-f", "x", "dlq", "list"]) or "")
    assert parse(["events", "dlq", "list", "-f", "x"]) is None
    assert parse(["status", "--no-such-flag"]) is not None
