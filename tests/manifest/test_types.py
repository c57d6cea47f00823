"""Small value types of the manifest: durations, sizes, CPU, commands, names, env values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_core import PydanticCustomError

from corral.manifest import parse_duration
from corral.manifest._types import parse_argv, parse_cpu, parse_env, parse_memory

ERRORS = (ValueError, PydanticCustomError)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1.5m", 90.0),
        ("1h", 3600.0),
        (" 3s ", 3.0),
        ("0", 0.0),
        ("10", 10.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_duration_spellings(written: Any, seconds: float) -> None:
    """Durations accept ms/s/m/h suffixes and bare seconds, as text or numbers."""
    assert parse_duration(written) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("10 seconds", "invalid duration '10 seconds'"),
        ("2d", "invalid duration '2d'"),
        ("", "invalid duration ''"),
        ("-1s", "invalid duration '-1s'"),
        (-1, "a duration cannot be negative"),
        (True, "not a boolean"),
        (None, "expected a duration"),
        ([1], "expected a duration"),
    ],
)
def test_duration_mistakes(written: Any, message: str) -> None:
    """Anything that is not a non-negative number with a known unit is refused, clearly."""
    with pytest.raises(ERRORS, match=message):
        parse_duration(written)


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1.5Gi", int(1.5 * 2**30)),
        ("64Ki", 64 * 1024),
        ("1Ti", 2**40),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("2K", 2000),
        ("1024", 1024),
        (1048576, 1048576),
    ],
)
def test_memory_sizes(written: Any, size: int) -> None:
    """Memory uses Kubernetes quantity spelling: binary Ki/Mi/Gi/Ti, decimal K/M/G/T, bytes."""
    assert parse_memory(written) == size


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("256MB", "did you mean '256Mi'?"),
        ("1GB", "did you mean '1Gi'?"),
        ("1 KiB", "did you mean '1Ki'?"),
        ("lots", "write a number with Ki, Mi, Gi (or K, M, G), e.g. 256Mi"),
        ("1Pi", "write a number with Ki, Mi, Gi (or K, M, G), e.g. 256Mi"),
    ],
)
def test_memory_mistakes_hint(written: str, hint: str) -> None:
    """A size the loader cannot read is refused with a hint, suggesting Mi for MB."""
    with pytest.raises(PydanticCustomError) as caught:
        parse_memory(written)
    context = caught.value.context or {}
    assert (context["message"], context["hint"]) == (f"invalid memory size {written!r}", hint)


def test_memory_refuses_booleans() -> None:
    """memory: true is a mistake, not one byte."""
    with pytest.raises(ValueError, match="memory size"):
        parse_memory(True)


@pytest.mark.parametrize(
    ("written", "cores"),
    [("500m", 0.5), ("250m", 0.25), ("0.5", 0.5), ("2", 2.0), (2, 2.0), (1.5, 1.5)],
)
def test_cpu_amounts(written: Any, cores: float) -> None:
    """CPU is cores (0.5, 2) or millicores (500m), as text or numbers."""
    assert parse_cpu(written) == pytest.approx(cores)


@pytest.mark.parametrize("written", ["lots", "500 mc", "1.5 cores", "", True])
def test_cpu_mistakes(written: Any) -> None:
    """Anything else is refused rather than guessed."""
    with pytest.raises(ERRORS):
        parse_cpu(written)


@pytest.mark.parametrize(
    ("written", "argv"),
    [
        ("python app.py", ["python", "app.py"]),
        ("python -c 'print(1)'", ["python", "-c", "print(1)"]),
        ('echo "a b"  c', ["echo", "a b", "c"]),
        (["python", "app.py"], ["python", "app.py"]),
        (["sleep", 10], ["sleep", "10"]),
        (["ratio", 0.5], ["ratio", "0.5"]),
        (["echo", "yes", "no"], ["echo", "yes", "no"]),
    ],
)
def test_argv_splitting(written: Any, argv: list[str]) -> None:
    """A command string is split like a shell would; list items are kept, numbers as text."""
    assert parse_argv(written) == argv


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("", "the command is empty"),
        ("   ", "the command is empty"),
        ([], "the command is empty"),
        ("echo 'oops", "cannot split command"),
        (["echo", True], "argument 1 of the command is true"),
        (["echo", "x", None], "argument 2 of the command is null"),
        (["echo", ["a"]], "argument 1 of the command is a list"),
        ({"run": "x"}, "expected a command"),
        (42, "expected a command"),
    ],
)
def test_argv_mistakes(written: Any, message: str) -> None:
    """Empty commands, unbalanced quotes and YAML non-strings in a list are refused."""
    with pytest.raises(ERRORS) as caught:
        parse_argv(written)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("written", "env"),
    [
        ({"A": "x"}, {"A": "x"}),
        ({"DEBUG": True, "QUIET": False}, {"DEBUG": "true", "QUIET": "false"}),
        ({"WORKERS": 4}, {"WORKERS": "4"}),
        ({"RATIO": 0.5}, {"RATIO": 0.5}),
        ({"EMPTY": None}, {"EMPTY": None}),
        (["A=1"], ["A=1"]),
    ],
)
def test_env_values(written: Any, env: Any) -> None:
    """Booleans and integers become text; floats and others pass through to be refused."""
    assert parse_env(written) == env
