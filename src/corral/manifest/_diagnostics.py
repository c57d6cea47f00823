"""Diagnostics: a user mistake in a manifest, with where it is and what to do.

Every problem Corral finds in a manifest becomes a :class:`Diagnostic` naming the file,
line, column and key path, with a hint where one helps. :class:`ManifestError` carries
all of them at once, so ``corral validate`` can list every problem, not just the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PathPart = str | int
KeyPath = tuple[PathPart, ...]


def format_path(path: KeyPath) -> str:
    """``('services', 'web', 'command', 0)`` -> ``services.web.command[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
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
        text = f"{self.file}:{self.line}:{self.column}: {format_path(self.path)}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ManifestError(Exception):
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
