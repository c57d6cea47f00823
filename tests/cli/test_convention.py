"""One CLI convention: every command takes the manifest as its first argument or with
-f/--file, with the same meaning; `logs` follows with --follow/-F. In-process through
`main()` (messages and exit codes as a user sees them), with no system running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.cli import app, main
from corral.cli._common import ManifestCommand, hint

MANIFEST = "name: demo\nservices:\n  web:\n    command: [python3, -m, http.server]\n"

# Commands that talk to a running system: with none running, each names the manifest it
# was given (so the argument reached it) and how to start it.
TALKERS = [
    ["status"],
    ["down"],
    ["logs"],
    ["logs", "web", "--tail", "5"],
    ["scale", "web=2"],
    ["restart", "web", "--rolling"],
    ["start", "web"],
    ["stop", "web"],
    ["dashboard"],
    ["top", "--once"],
    ["gateway", "routes"],
    ["events", "dlq", "list"],
    ["events", "dlq", "show", "1"],
    ["events", "dlq", "replay"],
    ["events", "dlq", "purge", "--yes"],
    ["chaos", "kill", "web-1"],
    ["chaos", "pause", "web-1", "--for", "5s"],
    ["chaos", "gateway", "web", "--abort", "503"],
    ["chaos", "list"],
    ["chaos", "stop", "--all"],
    ["config", "set", "web", "KEY=value", "-m", "why"],
    ["config", "unset", "web", "KEY"],
    ["config", "rollback", "1"],
    ["config", "apply"],
]


def run(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """`corral ARGS` through main(): (exit code, stdout and stderr, whitespace folded)."""
    monkeypatch.setattr(sys, "argv", ["corral", *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exited:
        code = exited.code
    out = capsys.readouterr()
    return int(code or 0), " ".join((out.out + out.err).split())


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a manifest, and an empty per-user list of running systems."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("CORRAL_FILE", raising=False)
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "corral.yaml").write_text(MANIFEST)
    return folder


def place(args: list[str], manifest: str, how: str) -> list[str]:
    """The manifest as the first argument after the command's name, or with -f."""
    words = [w for w in args if not w.startswith("-")]
    depth = (
        1 + (args[0] in ("gateway", "events", "chaos", "config")) + (args[:2] == ["events", "dlq"])
    )
    assert words[:depth] == args[:depth]
    if how == "argument":
        return [*args[:depth], manifest, *args[depth:]]
    return [*args, "-f", manifest]


@pytest.mark.parametrize("how", ["argument", "option"])
@pytest.mark.parametrize("args", TALKERS, ids=lambda a: " ".join(a))
def test_a_command_for_a_running_system_takes_the_manifest_both_ways(
    args: list[str],
    how: str,
    system: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`corral status shop` and `corral status -f shop` mean the same; so does every
    command. (Before, only up/validate/lint took it as an argument: `corral status
    examples/ridehail` was "unexpected extra argument".)"""
    monkeypatch.chdir(system.parent)
    code, text = run(place(args, "shop/", how), monkeypatch, capsys)
    assert code == 1, text
    assert f"no system is running for {system / 'corral.yaml'}" in text
    assert f"corral up {system}" in text  # a hint with the real path
    assert "Traceback" not in text


@pytest.mark.parametrize("how", ["argument", "option"])
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate"], "system 'demo', 1 services (web)"),
        (["lint"], "0 errors, 1 warning in shop/corral.yaml"),
        (["migrate"], "web: not a corral.sdk app"),
        (["events", "catalog"], "this manifest has no `events:` section"),
        (["config", "show"], "no configuration history here yet"),
        (["config", "history", "web"], "no configuration history here yet"),
        (["config", "diff", "1", "2"], "no configuration history here yet"),
        (["export", "prometheus", "-o", "out"], "prometheus in out"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_a_local_command_takes_the_manifest_both_ways(
    args: list[str],
    expected: str,
    how: str,
    system: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Commands that read the manifest themselves accept it the same two ways."""
    monkeypatch.chdir(system.parent)
    _code, text = run(place(args, str(system), how), monkeypatch, capsys)
    assert expected in text


def test_every_command_but_ls_and_serve_follows_the_convention() -> None:
    """Walks the command tree: a new command cannot forget the convention."""
    import typer.main

    def walk(command: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
        children = getattr(command, "commands", None)
        if children is None:
            return [(path, command)]
        return [found for name, sub in children.items() for found in walk(sub, (*path, name))]

    leaves = walk(typer.main.get_command(app), ())
    assert len(leaves) > 30
    outside = sorted(" ".join(p) for p, c in leaves if not isinstance(c, ManifestCommand))
    assert outside == ["ls", "serve"]
    for path, command in leaves:
        if isinstance(command, ManifestCommand):
            options = {o for p in command.params for o in getattr(p, "opts", ())}
            assert {"-f", "--file"} <= options, path


def test_a_service_name_is_not_taken_for_a_manifest(
    system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With its own arguments, a command takes only a path as the manifest: in a folder
    with a `web/` directory, `corral restart web` still restarts the service web."""
    monkeypatch.chdir(system)
    (system / "web").mkdir()
    code, text = run(["restart", "web"], monkeypatch, capsys)
    assert code == 1
    assert f"no system is running for {system / 'corral.yaml'}" in text


def test_the_manifest_given_twice_is_a_usage_error(
    system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An argument and -f at once: refused (exit 2), not silently one of them."""
    code, text = run(["status", str(system), "-f", str(system)], monkeypatch, capsys)
    assert code == 2
    assert "given twice" in text


def test_logs_follows_with_capital_f(
    system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In `logs`, -f is the manifest, as everywhere; following is --follow/-F."""
    code, text = run(["logs", "-F", "-f", str(system)], monkeypatch, capsys)
    assert code == 1
    assert f"no system is running for {system / 'corral.yaml'}" in text


def test_a_bad_since_is_a_usage_error(
    system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logs --since soon` says what it accepts (it was a ValueError traceback)."""
    code, text = run(["logs", str(system), "--since", "soon"], monkeypatch, capsys)
    assert code == 2
    assert "invalid --since 'soon'" in text


def test_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`corral --version` prints the installed version."""
    from importlib.metadata import version

    assert run(["--version"], monkeypatch, capsys) == (0, f"corral {version('corral')}")


def test_shell_completion_is_offered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Typer's completion: `--show-completion bash` prints the script for `corral`."""
    code, text = run(["--show-completion", "bash"], monkeypatch, capsys)
    assert code == 0
    assert "_CORRAL_COMPLETE=complete_bash" in text


def test_status_without_a_manifest_says_so_and_lists_what_runs(
    tmp_path: Path,
    system: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In a folder with no corral.yaml, `corral status` says so, then lists the systems
    this user runs (here one recorded by this very process, whose API does not answer)."""
    import os

    from corral.runtime.systems import RunningSystem, SystemsIndex, systems_dir

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    code, text = run(["status"], monkeypatch, capsys)
    assert code == 1
    assert f"no corral.yaml in {empty}" in text
    assert "no system is running" in text

    SystemsIndex(systems_dir()).register(
        RunningSystem(
            system="demo",
            manifest=str(system / "corral.yaml"),
            state_dir=str(system / ".corral"),
            pid=os.getpid(),
        )
    )
    code, text = run(["status"], monkeypatch, capsys)
    assert code == 1
    assert "running systems" in text
    assert f"│ demo │ {system} │" in text
    assert "not answering" in text


def test_hints_name_the_manifest_by_its_real_path(tmp_path: Path) -> None:
    """A hint works from any folder: the manifest's absolute folder (or file, when it is
    not named corral.yaml), quoted for the shell."""
    (tmp_path / "my shop").mkdir()
    (tmp_path / "my shop" / "corral.yaml").write_text(MANIFEST)
    assert hint("logs", tmp_path / "my shop", "-F") == f"corral logs '{tmp_path}/my shop' -F"
    other = tmp_path / "prod.yaml"
    assert hint("down", other) == f"corral down {other}"


@pytest.mark.parametrize("how", ["argument", "option"])
def test_chaos_run_takes_the_experiment_and_the_manifest_both_ways(
    how: str, system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`corral chaos run SYS EXPERIMENT` and `corral chaos run EXPERIMENT -f SYS`: the
    experiment (a .yaml path too) is never taken for the manifest."""
    experiment = Path(__file__).parents[2] / "examples/ridehail/chaos/matching-paused.yaml"
    monkeypatch.chdir(system.parent)
    args = (
        ["chaos", "run", "shop/", str(experiment)]
        if how == "argument"
        else ["chaos", "run", str(experiment), "-f", "shop/"]
    )
    code, text = run(args, monkeypatch, capsys)
    assert code == 2, text  # nothing was run: not a verdict
    assert f"no system is running for {system / 'corral.yaml'}" in text
