"""The test tree itself: what pytest's default import mode needs to collect every file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _module_name(path: Path) -> str:
    """The name pytest imports ``path`` under (rootdir-relative packages, else the stem)."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def test_no_two_test_modules_share_an_import_name() -> None:
    """Two ``test_x.py`` in folders without ``__init__.py`` collide ("import file
    mismatch"), and which one loses depends on how xdist splits the files."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):  # conftest.py files pytest loads by path
        seen[_module_name(path)].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename one of each: {clashes}"
