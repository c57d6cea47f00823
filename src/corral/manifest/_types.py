"""Small value types of the manifest language: names, durations, sizes."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AllowInfNan, BeforeValidator, ConfigDict, Strict
from pydantic_core import PydanticCustomError

from corral.manifest._diagnostics import shown

STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
"""Every manifest model rejects unknown keys: a typo must never be silently ignored."""

PROBLEM = "corral_problem"
"""The pydantic error type of :func:`problem`; the translator reads its hint."""


def problem(message: str, hint: str | None = None, *, at: str | None = None) -> PydanticCustomError:
    """A validation error with a hint, raised from a validator instead of ValueError.

    ``at`` names the key a model validator blames (pydantic would point at the whole
    mapping). The message travels in the context, not the template, so braces in a
    user's value are never taken for placeholders.
    """
    context = {"message": message, "hint": hint, "at": at}
    return PydanticCustomError(PROBLEM, "{message}", context)


Int = Annotated[int, Strict()]
"""An integer as YAML writes it: ``true``, ``1.5`` and ``"2"`` are mistakes, not 1, 1, 2."""

Bool = Annotated[bool, Strict()]
"""``true`` or ``false``; not ``1``, ``"yes"`` or ``"on"``."""

Number = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite number (an integer is fine); not a boolean, a quoted string, .inf or .nan."""

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$|^[a-z]$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        suggestion = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:42]
        hint = (
            f"did you mean {suggestion!r}?"
            if _NAME.match(suggestion)
            else "lower-case letters, digits and '-', starting with a letter"
        )
        raise problem(f"invalid name {shown(value)}", hint)
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A service or system name: a DNS-label-like identifier."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """``"500ms"``, ``"2s"``, ``"1.5m"``, ``3`` (seconds) -> seconds as float."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 2s or 1m, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise problem(
                f"invalid duration {shown(value)}",
                "write a number with ms, s, m or h, e.g. 500ms or 2s",
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("expected a duration such as 500ms, 2s or 1m")
    if not math.isfinite(seconds):  # .inf, .nan, or more digits than a float holds
        raise problem(f"duration {shown(value)} is not a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as ``500ms``, ``2s``, ``1m`` or a bare number of seconds."""

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_MEMORY_FACTOR = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


MAX_BYTES = 2**63 - 1
"""The largest size anything downstream takes (Kubernetes quantities, NATS limits: int64)."""


def parse_memory(value: Any) -> Any:
    """``"256Mi"``, ``"1G"``, ``1048576`` -> bytes (Kubernetes quantity spelling)."""
    if isinstance(value, bool):
        raise ValueError("expected a memory size such as 256Mi or 1Gi")
    size: int | Decimal | None = None
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _MEMORY.match(value)):
        # Decimal, not float: exact, and no overflow for a number of many digits.
        size = Decimal(match.group(1)) * _MEMORY_FACTOR[match.group(2)]
    if size is not None:
        if size > MAX_BYTES:
            raise problem(f"size {shown(value)} is too large", "at most 8Ei (2^63 - 1 bytes)")
        return int(size)
    hint = "write a number with Ki, Mi, Gi (or K, M, G), e.g. 256Mi"
    if isinstance(value, str) and (match := re.match(r"^\s*([\d.]+)\s*([KMGT])i?B\s*$", value)):
        hint = f"did you mean '{match.group(1)}{match.group(2)}i'?"
    raise problem(f"invalid memory size {shown(value)}", hint)


MemoryBytes = Annotated[int, BeforeValidator(parse_memory)]

_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m)?\s*$")


def parse_cpu(value: Any) -> Any:
    """``"500m"``, ``"0.5"``, ``2`` -> cores as float (Kubernetes quantity spelling)."""
    if isinstance(value, bool):
        raise ValueError("expected a CPU amount such as 500m or 0.5")
    cores: float | None = None
    if isinstance(value, int | float):
        cores = float(value)
    elif isinstance(value, str) and (match := _CPU.match(value)):
        cores = float(match.group(1)) / (1000 if match.group(2) else 1)
    if cores is None:
        raise problem(
            f"invalid CPU amount {shown(value)}", "write cores (0.5) or millicores (500m)"
        )
    if not math.isfinite(cores):
        raise problem(f"CPU amount {shown(value)} is not a finite number")
    return cores


Cpu = Annotated[float, BeforeValidator(parse_cpu)]


def parse_argv(value: Any) -> Any:
    """A command as a list of arguments, or one string split like a shell would."""
    import shlex

    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command: {exc}") from None
        if not argv:
            raise ValueError("the command is empty")
        return argv
    if isinstance(value, list | tuple):  # a tuple is the validated form, built in code
        if not value:
            raise ValueError("the command is empty")
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise problem(
                    f"argument {index} of the command is {_yaml_word(item)}, not a string",
                    "quote it: YAML reads true, false and null as other types"
                    if not isinstance(item, dict | list)
                    else None,
                )
        return [str(item) for item in value]
    raise ValueError("expected a command: a string or a list of strings")


Argv = Annotated[tuple[str, ...], BeforeValidator(parse_argv)]


def _yaml_word(value: Any) -> str:
    """How YAML spelled a non-string scalar, or what kind of collection it is."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "a mapping" if isinstance(value, dict) else "a list"


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            f"invalid environment variable name {shown(value)}: letters, digits and '_', "
            "not starting with a digit"
        )
    return value


EnvName = Annotated[str, AfterValidator(check_env_name)]


def parse_env(value: Any) -> Any:
    """Environment values are strings; integers and booleans may be written bare.

    A bare decimal such as ``3.10`` is refused: YAML reads it as the number 3.1, so
    the service would silently get the wrong text.
    """
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, int):
            out[key] = str(item)
        else:
            out[key] = item  # floats and others fail the str check, with a "quote it" hint
    return out


def parse_methods(value: Any, known: frozenset[str]) -> Any:
    """``GET`` or ``[get, POST]`` -> ``("GET", "POST")``: upper case, sorted, no repeats;
    a method outside ``known`` names the ones that are."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value  # pydantic reports the wrong type
    out = set()
    for item in value:
        if not isinstance(item, str) or item.upper() not in known:
            raise ValueError(
                f"unknown HTTP method {shown(item)} (known: {', '.join(sorted(known))})"
            )
        out.add(item.upper())
    return tuple(sorted(out))
