"""Delivering an export: ``corral export`` as a person runs it, and the writer's rules
(never overwrite a file it did not write or that was edited, remove its own stale files,
secrets generated once)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import testkit
from corral.cli import main
from corral.export import Export, OverwriteError, Target, write_export

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def corral(*args: str, cwd: Path) -> Result:
    """The real command line, as a person runs it."""
    done = testkit.corral(*args, cwd=cwd, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """``corral`` through its own entry point in this process (a process each costs
    seconds of imports): the same parsing, messages and exit codes."""

    def invoke(*args: str, cwd: Path) -> Result:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["corral", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    folder = tmp_path / "hello"
    shutil.copytree(ROOT / "examples" / "hello", folder)
    return folder


def test_export_all_writes_every_target_and_then_changes_nothing(
    hello: Path, run: Callable[..., Result]
) -> None:
    """``corral export all`` prints each file it writes into deploy/; run again, it
    writes nothing."""
    first = corral("export", "all", cwd=hello)
    assert first.returncode == 0, first.stderr
    assert "wrote deploy/docker/greeter.Dockerfile" in first.stdout
    for folder in ("docker", "compose", "swarm", "kubernetes", "prometheus", "grafana"):
        assert (hello / "deploy" / folder).is_dir()
    second = run("export", "all", cwd=hello)
    assert second.returncode == 0, second.stderr
    assert "wrote" not in second.stdout
    assert "0 written" in second.stdout


def test_export_refuses_to_overwrite_a_file_it_did_not_write(
    hello: Path, run: Callable[..., Result]
) -> None:
    """A file of someone else's in the way stops the export before anything is written;
    --force overwrites it."""
    mine = hello / "deploy" / "docker" / "greeter.Dockerfile"
    mine.parent.mkdir(parents=True)
    mine.write_text("FROM scratch\n")
    refused = run("export", "docker", cwd=hello)
    assert refused.returncode == 1
    assert "greeter.Dockerfile: not written by corral export" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert mine.read_text() == "FROM scratch\n"
    assert not (hello / "deploy" / "docker" / "front.Dockerfile").exists()
    forced = run("export", "docker", "--force", cwd=hello)
    assert forced.returncode == 0, forced.stderr
    assert "corral.sdk.serve" in mine.read_text()


def test_kubernetes_refusal_points_at_the_manifest_line(
    hello: Path, run: Callable[..., Result]
) -> None:
    """A manifest Kubernetes cannot run is reported at its file, line and key, and nothing
    is written."""
    manifest = hello / "corral.yaml"
    manifest.write_text(manifest.read_text().replace("    database: none  ", "    # no db  ", 1))
    result = run("export", "kubernetes", cwd=hello)
    assert result.returncode == 1
    assert "corral.yaml:6:5: services.greeter.replicas: kubernetes:" in result.stderr
    assert not (hello / "deploy").exists()


def test_output_outside_the_system_is_refused_for_images(
    hello: Path, tmp_path: Path, run: Callable[..., Result]
) -> None:
    """Dockerfiles build from the system's folder, so their output must be inside it;
    other targets may go anywhere."""
    elsewhere = tmp_path / "elsewhere"
    result = run("export", "docker", "-o", str(elsewhere), cwd=hello)
    assert result.returncode == 1
    assert "outside" in result.stderr
    ok = run("export", "kubernetes", "-o", str(elsewhere), cwd=hello)
    assert ok.returncode == 0, ok.stderr


def _export(files: dict[str, str], secrets: tuple[str, ...] = ()) -> Export:
    return Export(files, (), secrets)


def test_an_edited_file_is_a_conflict(tmp_path: Path) -> None:
    """A file the export wrote and someone then edited is not overwritten."""
    write_export(tmp_path, _export({"docker/a": "one\n"}), targets=[Target.DOCKER])
    (tmp_path / "docker" / "a").write_text("edited\n")
    with pytest.raises(OverwriteError) as caught:
        write_export(tmp_path, _export({"docker/a": "two\n"}), targets=[Target.DOCKER])
    assert [c.reason for c in caught.value.conflicts] == ["changed since corral export wrote it"]
    assert (tmp_path / "docker" / "a").read_text() == "edited\n"


def test_stale_files_of_the_same_target_are_removed(tmp_path: Path) -> None:
    """A file an earlier export of the same target wrote and this one does not (a removed
    service) is deleted; other targets' files are left alone."""
    write_export(
        tmp_path,
        _export({"docker/a": "a\n", "docker/b": "b\n", "grafana/g": "g\n"}),
        targets=[Target.DOCKER, Target.GRAFANA],
    )
    report = write_export(tmp_path, _export({"docker/a": "a\n"}), targets=[Target.DOCKER])
    assert report.removed == ["docker/b"]
    assert report.unchanged == ["docker/a"]
    assert (tmp_path / "grafana" / "g").exists()


def test_secrets_are_generated_once_and_completed(tmp_path: Path) -> None:
    """compose/.env gets a random value per secret, is never rewritten, and only gains
    variables it lacks (mode 0600)."""
    files = {"compose/compose.yaml": "x\n"}
    targets = [Target.COMPOSE]
    assert write_export(tmp_path, _export(files, ("A",)), targets=targets).secrets == "created"
    env = tmp_path / "compose" / ".env"
    first = env.read_text()
    assert write_export(tmp_path, _export(files, ("A",)), targets=targets).secrets == "kept"
    assert env.read_text() == first
    assert write_export(tmp_path, _export(files, ("A", "B")), targets=targets).secrets == "updated"
    assert env.read_text().startswith(first)
    assert "\nB=" in env.read_text()
    assert env.stat().st_mode & 0o777 == 0o600
