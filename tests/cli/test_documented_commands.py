"""Every `corral ...` command shown in the README and the docs parses, names a manifest
that exists, and follows the one convention; a sequence of commands stays true.

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
import typer.main
from typer.testing import CliRunner

from corral.cli import app
from corral.cli._common import ManifestCommand

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


def manifest_of(args: list[str]) -> tuple[str | None, str | None]:
    """(the manifest a command line names, how: "argument" or "-f"), by the CLI's own rule."""
    command = typer.main.get_command(app)
    rest = list(args)
    while rest and getattr(command, "commands", None) and rest[0] in command.commands:  # type: ignore[attr-defined]
        command = command.commands[rest.pop(0)]  # type: ignore[attr-defined]
    if not isinstance(command, ManifestCommand):
        return None, None
    for flag in ("-f", "--file"):
        if flag in rest[:-1]:
            return rest[rest.index(flag) + 1], "-f"
    manifest, _ = command.split_manifest(rest)
    return manifest, "argument" if manifest else None


OURS = [(w, a) for w, a in COMMANDS if w.startswith(("README.md", "docs/"))]


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_manifest_exists(where: str, args: list[str]) -> None:
    """A documented manifest path is one a reader has (examples/..., not a typo)."""
    manifest, _ = manifest_of(args)
    if manifest is None or manifest.startswith("/") or not manifest.startswith("examples/"):
        return  # the current folder, or a file the text has the reader write
    target = ROOT / manifest
    assert target.is_file() or (target / "corral.yaml").is_file(), f"{where}: no {manifest}"


@pytest.mark.parametrize(("where", "args"), OURS, ids=[w for w, _ in OURS])
def test_documented_commands_give_the_manifest_first(where: str, args: list[str]) -> None:
    """The README and docs show one convention: the manifest as the first argument."""
    assert manifest_of(args)[1] != "-f", f"{where}: `corral {shlex.join(args)}` uses -f"


def test_the_manifest_is_found_by_the_clis_own_rule() -> None:
    """The check above can fail: it sees -f, a first argument, and a service name."""
    assert manifest_of(["status", "examples/ridehail"]) == ("examples/ridehail", "argument")
    assert manifest_of(["chaos", "kill", "-f", "x", "rides-1"]) == ("x", "-f")
    assert manifest_of(["restart", "rides"]) == (None, None)
    assert manifest_of(["ls"]) == (None, None)


def renamed_instances(block: list[list[str]]) -> list[str]:
    """Instance ids a command names after an earlier command in the same block renamed
    the service's instances (a rolling restart or a scale makes new ids)."""
    renamed: set[str] = set()
    stale: list[str] = []
    for args in block:
        words = [w for w in args if not w.startswith("-")]
        for word in words:
            service, _, ordinal = word.rpartition("-")
            if ordinal.isdigit() and service in renamed:
                stale.append(shlex.join(args))
        if words[:1] == ["restart"] and "--rolling" in args:
            renamed.add(words[-1])
        if words[:1] == ["scale"]:
            renamed.update(w.partition("=")[0] for w in words[1:] if "=" in w)
    return stale


def blocks() -> dict[str, list[list[str]]]:
    """Command lines per fenced block, in order (a block is one sequence to follow)."""
    found: dict[str, list[list[str]]] = {}
    for where, args in COMMANDS:
        document, line = where.split(":")
        key = f"{document}:{_block_start(document, int(line))}"
        found.setdefault(key, []).append(args)
    return found


def _block_start(document: str, line: int) -> int:
    lines = (ROOT / document).read_text().splitlines()
    return max(i for i in range(line) if lines[i].lstrip().startswith("```")) + 1


@pytest.mark.parametrize(("where", "block"), list(blocks().items()), ids=list(blocks()))
def test_a_sequence_names_no_instance_it_renamed(where: str, block: list[list[str]]) -> None:
    """The README once ran `restart rides --rolling` (rides-1/2 became rides-3/4) and
    then `chaos kill rides-1`, which no longer existed."""
    assert renamed_instances(block) == [], where


def test_a_renamed_instance_is_caught() -> None:
    """The check above can fail (the README's old sequence)."""
    old = [
        ["restart", "-f", "examples/ridehail", "rides", "--rolling"],
        ["chaos", "kill", "-f", "examples/ridehail", "rides-1"],
    ]
    assert renamed_instances(old) == ["chaos kill -f examples/ridehail rides-1"]
    assert renamed_instances([*old[:1], ["chaos", "kill", "examples/ridehail", "rides"]]) == []
