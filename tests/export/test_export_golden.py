"""Golden exports: every file of every target compared whole with golden/<case>/expected/.

Regenerate after an intended change with ``CORRAL_REGEN_GOLDEN=1 uv run pytest
tests/export/test_export_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import shutil

import pytest
from export_helpers import CASES, GOLDEN, ROOT, expected_files, render_case

REGEN = os.environ.get("CORRAL_REGEN_GOLDEN") == "1"


@pytest.mark.parametrize("case", CASES)
def test_golden_export(case: str) -> None:
    """The rendered folder equals the golden folder: the same files, byte for byte."""
    export = render_case(case)
    if REGEN:
        folder = GOLDEN / case / "expected"
        shutil.rmtree(folder, ignore_errors=True)
        for relative, text in export.files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text)
    expected = expected_files(case)
    assert sorted(export.files) == sorted(expected), f"golden {case}: files differ"
    for relative, text in export.files.items():
        assert text == expected[relative], (
            f"golden {case}: {relative} differs; regenerate and review"
        )


@pytest.mark.parametrize("case", CASES)
def test_export_is_deterministic_and_machine_independent(case: str) -> None:
    """Two renders are identical and name no path of this machine (they are shipped)."""
    first, second = render_case(case), render_case(case)
    assert first.files == second.files
    for relative, text in first.files.items():
        assert str(ROOT) not in text, f"{relative} names a path of this machine"
