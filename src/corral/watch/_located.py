"""Where new code failed: the file and line a Python traceback in a log tail points at."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Located", "locate"]

# `  File "/srv/app/greeter/app.py", line 23, in <module>` (", in ..." absent for a
# SyntaxError). Frames of "<frozen importlib._bootstrap>" and the like are not files.
_FRAME = re.compile(r'^\s*File "(?P<file>[^"<][^"]*)", line (?P<line>\d+)')
# The exception line that ends a traceback: `SyntaxError: invalid syntax`,
# `ModuleNotFoundError: No module named 'x'`, `pkg.errors.Boom: ...`.
_EXCEPTION = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))\b(: .*)?$")


@dataclass(frozen=True)
class Located:
    message: str
    """The exception line, e.g. ``SyntaxError: invalid syntax``; else the last line."""
    file: Path | None = None
    line: int | None = None
    """Where: the innermost frame in a file under ``root``, else the innermost at all."""

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        return f"{where}: {self.message}"


def locate(log_tail: Sequence[str], *, root: Path | None = None) -> Located | None:
    """The last traceback's innermost frame (preferring the project's own files, under
    ``root``, over the library frames an import error passes through) and its exception.
    None when the tail holds no line at all."""
    lines = [line.rstrip() for line in log_tail if line.strip()]
    if not lines:
        return None
    ends = [i for i, line in enumerate(lines) if _EXCEPTION.match(line)]
    if not ends:
        return Located(message=lines[-1].strip())
    end = ends[-1]
    start = max((i for i, line in enumerate(lines[:end]) if "Traceback" in line), default=0)
    frames = [m for line in lines[start:end] if (m := _FRAME.match(line))]
    if root is not None:
        own = [m for m in frames if Path(m["file"]).is_relative_to(root)]
        frames = own or frames
    message = lines[end].strip()
    if not frames:
        return Located(message=message)
    frame = frames[-1]
    return Located(message=message, file=Path(frame["file"]), line=int(frame["line"]))
