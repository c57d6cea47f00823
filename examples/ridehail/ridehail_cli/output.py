"""The one console both commands print to."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output (a CI log, `| less`) gets a wide fixed width instead of rich's 80
# columns, so a step's line is not folded into three (as corral's own CLI does).
console = Console(width=None if sys.stdout.isatty() else 160)
