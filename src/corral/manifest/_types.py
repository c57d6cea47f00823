"""Small value types of the manifest language: names, durations, sizes."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict

STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
"""Every manifest model rejects unknown keys: a typo must never be silently ignored."""

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$|^[a-z]$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use lower-case letters, digits and '-', starting with a "
            "letter (it becomes a DNS label, a process name and a database name)"
        )
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
            raise ValueError(f"invalid duration {value!r}: use a number with ms, s, m or h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("expected a duration such as 500ms, 2s or 1m")
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


def parse_memory(value: Any) -> Any:
    """``"256Mi"``, ``"1G"``, ``1048576`` -> bytes (Kubernetes quantity spelling)."""
    if isinstance(value, bool):
        raise ValueError("expected a memory size such as 256Mi or 1Gi")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _MEMORY.match(value)):
        return int(float(match.group(1)) * _MEMORY_FACTOR[match.group(2)])
    raise ValueError(f"invalid memory size {value!r}: use a number with Ki, Mi, Gi (or K, M, G)")


MemoryBytes = Annotated[int, BeforeValidator(parse_memory)]

_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m)?\s*$")


def parse_cpu(value: Any) -> Any:
    """``"500m"``, ``"0.5"``, ``2`` -> cores as float (Kubernetes quantity spelling)."""
    if isinstance(value, bool):
        raise ValueError("expected a CPU amount such as 500m or 0.5")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _CPU.match(value)):
        cores = float(match.group(1))
        return cores / 1000 if match.group(2) else cores
    raise ValueError(f"invalid CPU amount {value!r}: use cores (0.5) or millicores (500m)")


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
    if isinstance(value, list):
        if not value:
            raise ValueError("the command is empty")
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise ValueError(
                    f"argument {index} of the command is not a string; quote it "
                    "(YAML reads true, false, yes, no and null as other types)"
                )
        return [str(item) for item in value]
    raise ValueError("expected a command: a string or a list of strings")


Argv = Annotated[tuple[str, ...], BeforeValidator(parse_argv)]


def parse_env(value: Any) -> Any:
    """Environment values are strings; numbers and booleans are written as YAML scalars."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            out[key] = str(item)
        else:
            out[key] = item
    return out
