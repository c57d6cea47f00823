"""`corral chaos run` without a running system: one line and exit 2 (nothing was run,
so there is no verdict), never a traceback or a 1 that would read as "not held"."""

from __future__ import annotations

from pathlib import Path

from testkit import corral

EXPERIMENT = """\
title: t
hypothesis:
  probes: [{type: ready}]
method:
  - {action: kill, target: web}
"""


def test_no_running_system_is_exit_2_and_one_line(tmp_path: Path) -> None:
    """A valid experiment aimed at a folder where nothing runs."""
    (tmp_path / "corral.yaml").write_text("name: idle\nservices: {}\n")
    (tmp_path / "e.yaml").write_text(EXPERIMENT)
    result = corral("chaos", "run", "e.yaml", "-f", str(tmp_path), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip()
    assert "no system is running" in output
    assert "Traceback" not in output
    assert len(output.splitlines()) <= 2
