"""Where new code failed, read from the traceback in its log tail."""

from __future__ import annotations

from pathlib import Path

from corral.watch import locate

SYNTAX = [
    "Traceback (most recent call last):",
    '  File "<frozen runpy>", line 198, in _run_module_as_main',
    '  File "/venv/lib/python3.12/site-packages/corral/sdk/serve.py", line 40, in main',
    '  File "<frozen importlib._bootstrap>", line 1387, in _gcd_import',
    '  File "/srv/hello/greeter/app.py", line 23',
    "    def broken(:",
    "               ^",
    "SyntaxError: invalid syntax",
]

IMPORT = [
    "Traceback (most recent call last):",
    '  File "/srv/hello/greeter/app.py", line 5, in <module>',
    "    import missing_thing",
    '  File "/venv/lib/python3.12/site-packages/other/__init__.py", line 9, in <module>',
    "    raise ImportError('x')",
    "ModuleNotFoundError: No module named 'missing_thing'",
]


def test_a_syntax_error_names_its_file_and_line() -> None:
    """The innermost real file of the traceback, and the exception line."""
    found = locate(SYNTAX)
    assert found is not None
    assert (found.file, found.line) == (Path("/srv/hello/greeter/app.py"), 23)
    assert found.message == "SyntaxError: invalid syntax"
    assert str(found) == "/srv/hello/greeter/app.py:23: SyntaxError: invalid syntax"


def test_the_project_s_own_frame_wins_over_library_frames() -> None:
    """An import error raised inside a library points at the project's line."""
    found = locate(IMPORT, root=Path("/srv/hello"))
    assert found is not None
    assert (found.file, found.line) == (Path("/srv/hello/greeter/app.py"), 5)
    assert found.message.startswith("ModuleNotFoundError")
    outside = locate(IMPORT)
    assert outside is not None
    assert outside.file == Path("/venv/lib/python3.12/site-packages/other/__init__.py")


def test_no_traceback_gives_the_last_line() -> None:
    """A program that just exits: its last words, no location."""
    found = locate(["starting", "cannot bind: address in use", ""])
    assert found is not None
    assert found.file is None
    assert str(found) == "cannot bind: address in use"
    assert locate([]) is None
