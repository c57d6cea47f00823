"""`corral config` without a running system: the history is read from disk, changes are
refused with a message that says what to do, and bad arguments are usage errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app, main
from corral.config import ConfigStore, Secret, ServiceConfig, set_values

runner = CliRunner()


@pytest.fixture
def stopped(tmp_path: Path) -> Path:
    """A system folder whose history has two versions and whose system is not running."""
    (tmp_path / "corral.yaml").write_text("name: shop\nservices:\n  web: {command: x}\n")
    store = ConfigStore(tmp_path / ".corral" / "config")
    web = ServiceConfig(
        base={"LEVEL": "info"},
        sources={"LEVEL": "corral.yaml:3:9"},
        secrets={"KEY": Secret(ref="env:SHOP_KEY", fingerprint="fp:0123456789ab")},
    )
    store.commit(expected=0, services={"web": web}, author="ada", kind="up", now=0.0)
    changed = set_values({"web": web}, "web", {"LEVEL": "debug"}, version=2, author="bob")
    store.commit(expected=1, services=changed, author="bob", kind="set", message="more", now=60.0)
    return tmp_path


def test_show_history_and_diff_read_a_stopped_systems_history(stopped: Path) -> None:
    """With no system running, show/history/diff come from .corral/config."""
    shown = runner.invoke(app, ["config", "show", "web", "-f", str(stopped), "--version", "1"])
    assert shown.exit_code == 0, shown.output
    assert "corral.yaml:3:9" in shown.output
    assert "secret fp:0123456789ab" in shown.output
    history = runner.invoke(app, ["config", "history", "-f", str(stopped)])
    assert history.exit_code == 0, history.output
    assert "version 2" in history.output
    assert "bob  set: more" in history.output
    assert "~ web.LEVEL: info -> debug" in history.output
    diff = runner.invoke(app, ["config", "diff", "2", "1", "-f", str(stopped)])
    assert diff.output.strip() == "~ web.LEVEL: debug -> info"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["config", "set", "web", "LEVEL=warn"],
            1,
            "setting LEVEL of web changes a running system",
        ),
        (["config", "rollback", "1"], 1, "start it with `corral up "),
        (["config", "set", "web", "LEVEL"], 2, "expected KEY=VALUE, got 'LEVEL'"),
        (["config", "show", "--version", "7"], 1, "no configuration version 7 (versions 1-2)"),
    ],
)
def test_what_cannot_be_done_says_why(
    stopped: Path,
    args: list[str],
    code: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changes need a running system; a bad assignment is a usage error (exit 2); each
    says why in one line, no traceback."""
    monkeypatch.setattr(sys, "argv", ["corral", *args, "-f", str(stopped)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == code
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["--env", "CORRAL_ENV"])
def test_validate_merges_the_overlay_chosen_by_env(
    tmp_path: Path,
    how: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`validate --env prod` (or CORRAL_ENV=prod) checks corral.prod.yaml merged over the
    manifest and points into the overlay."""
    (tmp_path / "corral.yaml").write_text("name: shop\nservices:\n  web: {command: x}\n")
    (tmp_path / "corral.prod.yaml").write_text("services:\n  web:\n    replica: 3\n")
    args = ["corral", "validate", str(tmp_path)]
    if how == "--env":
        args += ["--env", "prod"]
    else:
        monkeypatch.setenv("CORRAL_ENV", "prod")
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    assert "corral.prod.yaml:3:5: services.web.replica: unknown key 'replica'" in (
        capsys.readouterr().err
    )
