"""--watch reloads new instances of what the system runs: under a container runtime that
is the image built at `up`, so watching is refused there with a clear message, before
anything starts (not reloads that silently keep the old code)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.cli import main

MANIFEST = "name: demo\nservices:\n  web:\n    command: [python3, -m, http.server]\n"


def test_up_watch_under_a_container_runtime_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "corral.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["corral", "up", "--watch", "--runtime", "docker"])
    with pytest.raises(SystemExit) as exited:
        main()
    text = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 1
    assert "--watch needs the process runtime (this system runs on docker" in text
    assert not (tmp_path / ".corral").exists(), "nothing may start"
