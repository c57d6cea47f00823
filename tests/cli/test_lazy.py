"""The root group's table of commands, and that a command imports only its own module."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer

from corral.cli._lazy import COMMANDS, load_command

_MODULES = sorted({module for module, _, _ in COMMANDS.values()})


@pytest.mark.parametrize("module", _MODULES)
def test_the_table_names_every_command_of_a_module(module: str) -> None:
    """A command added to a module but not to COMMANDS would be unreachable: every
    command (or named group) a module defines is in the table, and nothing else."""
    loaded = importlib.import_module(f"corral.cli.{module}")
    rows = {name: (attr, named) for name, (m, attr, named) in COMMANDS.items() if m == module}
    for attr in {attr for attr, _ in rows.values()}:
        commands: typer.Typer = getattr(loaded, attr)
        named = {n for n, (a, g) in rows.items() if a == attr and g}
        if named:
            assert len(named) == 1, f"{module}.{attr} is one named group"
            continue
        built = set(typer.main.get_group(commands).commands)
        assert built == {n for n, (a, _) in rows.items() if a == attr}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_loads_under_its_name(name: str) -> None:
    assert load_command(name).name == name


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        # `up` talks to no chaos, configuration or export code.
        (["up", "--help"], ["corral.cli._chaos", "corral.cli._config", "corral.cli._export"]),
        # A client command does not import the API's server side.
        (["status", "--help"], ["fastapi", "corral.cli._up", "corral.control"]),
    ],
)
def test_a_command_imports_only_its_own_module(argv: list[str], absent: list[str]) -> None:
    code = (
        "import sys\n"
        f"sys.argv = ['corral', *{argv!r}]\n"
        "from corral.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {absent!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
