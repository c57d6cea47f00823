"""The container runtime's own promises, beyond the conformance scenarios: clear errors
before anything starts, no container left when the orchestrator is SIGKILLed, a failed
build named by its Dockerfile line, and the environment a container gets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import cast

import pytest

import testkit
from corral.images import Engine, EngineError
from corral.images import _base as images_base
from corral.images import _wheels as images_wheels
from corral.images._build import base_id, build_failure
from corral.images._driver import container_environment, signal_exit

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_OVERLAY = ROOT / "tests" / "conformance" / "fixtures" / "corral.conformance.yaml"


def _corral(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return testkit.corral(*args, cwd=cwd, timeout=900, env=env)


def _hello(folder: Path) -> Path:
    """hello as the conformance suite runs it: the same files (its overlay included), so
    the same content-hashed image tags, built once per machine for both."""
    root = folder / "hello"
    shutil.copytree(
        ROOT / "examples" / "hello", root, ignore=shutil.ignore_patterns(".corral", "deploy")
    )
    shutil.copy2(CONFORMANCE_OVERLAY, root)
    return root


def _labelled(state_dir: Path) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=corral.state={state_dir}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def test_missing_engine_is_named_before_anything_starts(tmp_path: Path) -> None:
    root = _hello(tmp_path)
    env = {**os.environ, "PATH": str(tmp_path / "empty"), "XDG_RUNTIME_DIR": str(tmp_path)}
    result = _corral("up", "--runtime", "docker", cwd=root, env=env)
    assert result.returncode == 1
    assert "`docker` is not on PATH" in result.stderr, result.stderr
    assert "apt-get install docker.io" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / ".corral" / "run.json").exists()  # nothing left running


@pytest.mark.integration
def test_daemon_down_is_named_before_anything_starts(tmp_path: Path) -> None:
    root = _hello(tmp_path)
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock",
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    result = _corral("up", "--runtime", "docker", cwd=root, env=env)
    assert result.returncode == 1
    assert "the engine does not answer" in result.stderr, result.stderr
    assert "start the Docker daemon" in result.stderr
    assert not (root / ".corral" / "run.json").exists()


def test_unknown_runtime_is_refused(tmp_path: Path) -> None:
    root = _hello(tmp_path)
    env = {**os.environ, "CORRAL_RUNTIME": "lxc", "XDG_RUNTIME_DIR": str(tmp_path)}
    result = _corral("up", cwd=root, env=env)
    assert result.returncode == 1
    assert "CORRAL_RUNTIME: unknown runtime 'lxc'; use process, docker, podman" in result.stderr


def test_engine_find_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineError, match="apt-get install podman runc catatonit"):
        Engine.find("podman")


@pytest.mark.integration
@pytest.mark.timeout(900)  # the first container run of a session builds the images
def test_sigkilled_orchestrator_leaves_no_container(tmp_path: Path) -> None:
    """kill -9 of the orchestrator: the reaper removes every container of the run."""
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: `bash .ci/run` installs docker.io")
    root = _hello(tmp_path)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    up = _corral("up", "-d", "--runtime", "docker", cwd=root, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    state = root / ".corral"
    pid = json.loads((state / "run.json").read_text())["pid"]
    try:
        assert len(_labelled(state)) == 3  # greeter x2, front
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _labelled(state) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _labelled(state) == []
    finally:  # a failed assertion above must not leave the system running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if leftovers := _labelled(state):
            subprocess.run(["docker", "rm", "--force", *leftovers], check=False)


def test_failed_build_names_the_dockerfile_line(tmp_path: Path) -> None:
    dockerfile = tmp_path / "web.Dockerfile"
    dockerfile.write_text("FROM base AS dependencies\nCOPY a /a\nRUN pip install nothing\n")
    log = (
        "Step 1/3 : FROM base AS dependencies\n ---> 1234\nStep 2/3 : COPY a /a\n"
        "Step 3/3 : RUN pip install nothing\nERROR: No matching distribution found\n"
        "The command '/bin/sh -c pip install nothing' returned a non-zero code: 1\n"
    )
    message = build_failure("web", dockerfile, log)
    assert f"{dockerfile}:3" in message
    assert "RUN pip install nothing" in message
    assert "No matching distribution found" in message


def test_container_environment_keeps_the_contract_not_the_host() -> None:
    env = {"PATH": "/host/bin", "HOME": "/root", "VIRTUAL_ENV": "/v", "PORT": "8000",
           "CORRAL_SERVICE": "web", "UV_PYTHON": "x", "API_KEY": "s3cret"}  # fmt: skip
    assert container_environment(env) == {
        "PORT": "8000",
        "CORRAL_SERVICE": "web",
        "API_KEY": "s3cret",
    }


def test_engine_exit_codes_read_as_signals() -> None:
    assert signal_exit(137) == -signal.SIGKILL
    assert signal_exit(143) == -signal.SIGTERM
    assert signal_exit(0) == 0
    assert signal_exit(3) == 3


def test_a_second_maker_of_the_same_image_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs on one machine making the same image: the second waits (and says so)
    until the first is done, instead of building beside it."""
    monkeypatch.setattr(images_base, "CACHE", tmp_path)
    seen: list[str] = []

    async def scenario() -> None:
        held, release = asyncio.Event(), asyncio.Event()
        waiting = asyncio.Event()

        async def first() -> None:
            async with images_base.machine_lock("localhost/x:1", seen.append):
                seen.append("first made it")
                held.set()
                await release.wait()

        def progress(line: str) -> None:
            seen.append(line)
            waiting.set()

        async def second() -> None:
            await held.wait()
            async with images_base.machine_lock("localhost/x:1", progress):
                seen.append("second found it made")

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await asyncio.wait_for(waiting.wait(), 10)
        assert "second found it made" not in seen
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)

    asyncio.run(scenario())
    assert seen == [
        "first made it",
        "waiting for another corral making localhost/x:1",
        "second found it made",
    ]


def test_prune_spares_wheelhouses_used_within_the_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every checkout on the machine shares the cache: a wheelhouse another run used
    recently is never pruned, however many there are; old ones beyond three are."""
    monkeypatch.setattr(images_wheels, "CACHE", tmp_path)
    recent = [tmp_path / f"wheelhouse-recent{n}" for n in range(5)]
    old = [tmp_path / f"wheelhouse-old{n}" for n in range(2)]
    for folder in recent + old:
        folder.mkdir()
    long_ago = time.time() - 2 * images_wheels.IN_USE_S
    for folder in old:
        os.utime(folder, (long_ago, long_ago))
    images_wheels._prune("wheelhouse-", keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in recent)


class _PrintsId:
    """An engine whose ``image inspect`` prints ``printed``."""

    def __init__(self, printed: str) -> None:
        self.printed = printed

    async def run(self, *args: str, **kwargs: object) -> tuple[int, str, str]:
        return 0, self.printed, ""


def test_both_engines_name_one_base_image_alike() -> None:
    """docker's "sha256:<id>" and podman's "<id>" of the same base give one id, so the
    images' content tags agree and one engine copies the other's images."""
    ids = {
        asyncio.run(base_id(cast(Engine, _PrintsId(printed)), "localhost/corral-base:trixie"))
        for printed in ("sha256:270ab5470672\n", "270ab5470672\n")
    }
    assert ids == {"270ab5470672"}
