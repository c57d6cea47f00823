"""pydantic's validation errors -> Diagnostics a person can act on.

pydantic reports a location tuple and a message; we map the location to the YAML
position, phrase the message in the manifest's terms and add hints ("did you mean").
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from datetime import date
from enum import Enum
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from corral.manifest._diagnostics import (
    SHOWN_CHARACTERS,
    Diagnostic,
    KeyPath,
    printable,
    shown,
)
from corral.manifest._source import SourceMap
from corral.manifest._types import PROBLEM


def translate(error: ValidationError, root: type[BaseModel], source: SourceMap) -> list[Diagnostic]:
    """Every error pydantic found, as diagnostics, one per location and message."""
    details = error.errors(include_url=False)
    misspelt = {_misspelling(detail, root) for detail in details} - {None}
    seen: set[tuple[KeyPath, str]] = set()
    out: list[Diagnostic] = []
    for detail in details:
        if detail["type"] == "missing" and tuple(detail["loc"]) in misspelt:
            continue  # 'service:' for 'services:' is one mistake, reported once
        diagnostic = _one(detail, root, source)
        key = (diagnostic.path, diagnostic.message)
        if key not in seen:
            seen.add(key)
            out.append(diagnostic)
    return out


def _misspelling(detail: ErrorDetails, root: type[BaseModel]) -> KeyPath | None:
    """For an unknown key close to a known one, the path of the key it stands for."""
    if detail["type"] != "extra_forbidden":
        return None
    path: KeyPath = tuple(detail["loc"])
    close = _close_key(root, path)
    return (*path[:-1], close) if close else None


def _close_key(root: type[BaseModel], path: KeyPath) -> str | None:
    allowed = sorted(_allowed_keys(root, path[:-1]))
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _one(detail: ErrorDetails, root: type[BaseModel], source: SourceMap) -> Diagnostic:
    loc: KeyPath = tuple(detail["loc"])
    kind = detail["type"]
    is_key_error = "[key]" in loc
    path = tuple(part for part in loc if part != "[key]")
    message = detail["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")

    if kind == PROBLEM:
        context = detail.get("ctx", {})
        if context.get("at"):
            path = (*path, str(context["at"]))
        return source.diagnostic(path, str(context["message"]), context.get("hint"))
    if kind == "extra_forbidden":
        key = str(path[-1])
        close = _close_key(root, path)
        allowed = sorted(_allowed_keys(root, path[:-1]))
        hint = f"did you mean {close!r}?" if close else _known(allowed)
        return source.diagnostic(path, f"unknown key {shown(key)}", hint)
    if kind == "missing":
        return source.diagnostic(path[:-1], f"missing required key {path[-1]!r}")
    if is_key_error:
        return source.diagnostic(path, message)
    if kind == "enum" and isinstance(detail.get("input"), str):
        expected = _enum_values(root, path)
        matches = difflib.get_close_matches(detail["input"], expected, n=1, cutoff=0.6)
        hint = f"did you mean {matches[0]!r}?" if matches else None
        return source.diagnostic(path, f"{_expected(message)}, got {shown(detail['input'])}", hint)
    got = detail.get("input")
    if kind in _TYPE_WORDS:
        return source.diagnostic(
            path, f"expected {_TYPE_WORDS[kind]}, got {_describe(got)}", _type_hint(kind, path, got)
        )
    if kind in _BOUND_WORDS:
        bound = next(iter(detail.get("ctx", {}).values()))
        return source.diagnostic(
            path, f"must be {_BOUND_WORDS[kind]} {_number(bound)}, got {_number(got)}"
        )
    if kind == "too_short":
        least = detail.get("ctx", {}).get("min_length", 1)
        return source.diagnostic(path, f"needs at least {least} entr{'y' if least == 1 else 'ies'}")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return source.diagnostic(path, f"{_expected(message)}, got {_describe(got)}")
    return source.diagnostic(path, message)


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}

_BOUND_WORDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}


def _type_hint(kind: str, path: KeyPath, got: Any) -> str | None:
    """What a person most likely meant when a value has the wrong type."""
    if kind == "string_type" and isinstance(got, bool | int | float | date):
        return "quote it to make it a string"
    if kind in ("int_type", "float_type") and isinstance(got, str):
        try:
            float(got)
        except ValueError:
            return None
        return "write the number without quotes"
    if kind == "model_type" and isinstance(got, str) and len(path) == 2 and path[0] == "services":
        return (
            f"a service is a mapping; did you mean 'command: {printable(got, SHOWN_CHARACTERS)}'?"
        )
    return None


def _number(value: Any) -> str:
    """A bound or the value past it: ``5.0`` as ``5``, an integer with all its digits
    (``1e+32`` would hide what was written), anything else as diagnostics show values."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return shown(value)


def _known(allowed: list[str]) -> str | None:
    if not allowed:
        return None
    return "known keys: " + ", ".join(allowed)


def _expected(message: str) -> str:
    """'Input should be a valid integer, unable to parse…' -> 'expected a valid integer'."""
    head = message.split(", unable")[0]
    return head.replace("Input should be", "expected")


def _describe(value: Any) -> str:
    return "nothing (null)" if value is None else shown(value)


def _unwrap(annotation: Any) -> Iterator[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _unwrap(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _unwrap(arg)
    else:
        yield annotation


def _types_at(root: type[BaseModel], path: KeyPath) -> list[Any]:
    """The annotation types that apply at ``path``, following models and dict values."""
    current: list[Any] = [root]
    for part in path:
        following: list[Any] = []
        for candidate in current:
            for concrete in _unwrap(candidate):
                origin = typing.get_origin(concrete)
                if isinstance(concrete, type) and issubclass(concrete, BaseModel):
                    field = concrete.model_fields.get(str(part))
                    if field is None:
                        field = next(
                            (f for f in concrete.model_fields.values() if f.alias == part), None
                        )
                    if field is not None:
                        following.append(field.annotation)
                elif origin is dict:
                    following.append(typing.get_args(concrete)[1])
                elif origin in (list, tuple):
                    following.append(typing.get_args(concrete)[0])
        current = following
    return current


def _allowed_keys(root: type[BaseModel], path: KeyPath) -> set[str]:
    keys: set[str] = set()
    for candidate in _types_at(root, path):
        for concrete in _unwrap(candidate):
            if isinstance(concrete, type) and issubclass(concrete, BaseModel):
                for name, field in concrete.model_fields.items():
                    keys.add(field.alias or name)
    return keys


def _enum_values(root: type[BaseModel], path: KeyPath) -> list[str]:
    values: list[str] = []
    for candidate in _types_at(root, path):
        for concrete in _unwrap(candidate):
            if isinstance(concrete, type) and issubclass(concrete, Enum):
                values.extend(str(member.value) for member in concrete)
    return values
