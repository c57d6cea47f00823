"""The test tree itself: what pytest's default import mode needs to collect every file."""

from __future__ import annotations

import re
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


def test_the_shared_test_helpers_have_one_copy() -> None:
    """A free port, the real CLI as a subprocess: tests/testkit.py has them (issue 17.7:
    one copy, not seven), and no test module edits sys.path (pyproject's pythonpath)."""
    markers = {
        "a free_port": re.compile(r"^def free_port\(", re.M),
        "a corral runner": re.compile(r"subprocess\.run\(\s*\[sys\.executable, \"-m\", \"corral\""),
        "a sys.path edit": re.compile(r"sys\.path\.(insert|append)\("),
    }
    copies = [
        f"{path.relative_to(TESTS)}: {what}"
        for path in TESTS.rglob("*.py")
        if path.name not in ("testkit.py", "test_layout.py")
        for what, pattern in markers.items()
        if pattern.search(path.read_text())
    ]
    assert copies == []
