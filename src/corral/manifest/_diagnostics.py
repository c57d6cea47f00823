"""Diagnostics: a user mistake in a manifest, with where it is and what to do.

Every problem Corral finds in a manifest becomes a :class:`Diagnostic` naming the file,
line, column and key path, with a hint where one helps. :class:`ManifestError` carries
all of them at once, so ``corral validate`` can list every problem, not just the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from corral.errors import CorralError

PathPart = str | int
KeyPath = tuple[PathPart, ...]


SHOWN_CHARACTERS = 60
"""How much of a string value or key a diagnostic echoes; the rest is counted."""

MAX_TEXT = 1000
"""A diagnostic's message or hint is cut here, whatever put a long value in it."""

_PATH_PARTS = 12
"""A deeper key path shows its first and last parts (deep nesting is refused at 64)."""


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` safe to print on a terminal: control and invisible characters (an escape
    sequence, a newline, U+202E) written as escapes, and cut after ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def shown(value: object) -> str:
    """A value from a manifest as a diagnostic quotes it: a string in quotes with control
    and invisible characters escaped, cut after ``SHOWN_CHARACTERS`` with its length; a
    whole number with all its digits (never ``1e+32``); YAML's words for true, false
    and null; a mapping or list by its kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 14_000:  # str() refuses past 4,300 digits (the loader's
            return "a number of over 4,000 digits"  # bound is far lower)
        digits = str(int(value))  # int(): ruamel's int subclasses print their own way
        if len(digits) <= SHOWN_CHARACTERS:
            return digits
        return f"{digits[:SHOWN_CHARACTERS]}… ({len(digits):,} digits)"
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARACTERS:
            return repr(value)
        return f"{value[:SHOWN_CHARACTERS]!r}… ({len(value):,} characters)"
    if isinstance(value, date):  # YAML reads 2024-01-01 as a date
        return value.isoformat()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return printable(repr(value), SHOWN_CHARACTERS)


def format_path(path: KeyPath) -> str:
    """``('services', 'web', 'command', 0)`` -> ``services.web.command[0]``; keys are
    made printable and cut, and a very deep path shows its ends."""
    if len(path) > _PATH_PARTS:
        head, tail = path[: _PATH_PARTS - 4], path[-3:]
        return f"{format_path(head)}…{format_path(tail).removeprefix('(top level)')}"
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(part, SHOWN_CHARACTERS)
    return out or "(top level)"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a manifest. Lines and columns are 1-based, as editors show them."""

    file: str
    line: int
    column: int
    path: KeyPath = field(compare=False)
    message: str = field(compare=False)
    hint: str | None = field(default=None, compare=False)
    rule: str | None = field(default=None, compare=False)
    """The ``corral lint`` rule this problem is also an instance of (e.g. a shared
    database), so lint reports it once, under that rule; None for the others."""

    def __str__(self) -> str:
        where = f"{printable(self.file)}:{self.line}:{self.column}: {format_path(self.path)}"
        text = f"{where}: {printable(self.message)}"
        if self.hint:
            text += f" ({printable(self.hint)})"
        return text


class ManifestError(CorralError):
    """A manifest that cannot be used; ``diagnostics`` lists every problem found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: Sequence[Diagnostic] = tuple(sorted(diagnostics))
        if not self.diagnostics:
            raise ValueError("ManifestError needs at least one diagnostic")
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.diagnostics)
        # A manifest and its environment overlay: problems may be in both files.
        files = " and ".join(dict.fromkeys(d.file for d in self.diagnostics))
        head = f"{count} problem{'s' if count != 1 else ''} in {files}:"
        return "\n".join([head, *(f"  {d}" for d in self.diagnostics)])
