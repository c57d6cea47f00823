"""The exported Dockerfile built and run by real podman: examples/hello's greeter from a
debootstrap base (Python 3.13) and a host-built wheelhouse, answering as a service,
running as its non-root user, passing its HEALTHCHECK and stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from export_helpers import ROOT, free_port, wait_for
from podman_runtime import RUNC, write_runc_wrapper

from corral.images import Engine, ensure_base_image

# Building a base image and an image from scratch takes minutes on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CACHE = Path("/var/tmp/corral-test-images")
IMAGE = "localhost/corral-test-hello-greeter:latest"
GRACE = 10  # podman stop -t: SIGKILL after this many seconds (the exit code then is 137)


def _run(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def runtime() -> Path:
    """The runc wrapper; fails (never skips) with what to install when a tool is missing."""
    missing = [t for t in ("podman", "debootstrap") if shutil.which(t) is None]
    missing += ["runc"] if not Path(RUNC).exists() else []
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install podman runc debootstrap")
    return write_runc_wrapper(CACHE)


@pytest.fixture(scope="session")
def base_image(runtime: Path) -> str:
    """The container runtime's Debian trixie base (python3 and venv): made once per
    machine with debootstrap, or copied from docker, and shared with the runtime's tests."""
    return asyncio.run(ensure_base_image(Engine.find("podman"), lambda line: None))


# `uv run` names its own binary in UV; a fresh CI machine has uv only as a pip package
# of the Python it runs, which need not be on PATH.
UV = os.environ.get("UV") or shutil.which("uv") or "uv"


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Corral's wheel (from this tree) and its cp313 manylinux dependencies: the build
    reaches no package index. The dependencies are cached by uv.lock's hash."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    _run(UV, "build", "--wheel", "--package", "corral", "--out-dir", folder, ROOT)
    wheel = next(folder.glob("corral-*.whl"))
    key = hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()[:16]
    dependencies = CACHE / f"wheels-cp313-{key}"
    if not dependencies.exists():
        partial = Path(tempfile.mkdtemp(dir=CACHE))
        _run(
            UV, "tool", "run", "pip", "download", "--quiet", "--only-binary=:all:",
            "--python-version", "3.13", "--platform", "manylinux2014_x86_64",
            "--platform", "manylinux_2_28_x86_64", "--implementation", "cp",
            "--dest", partial, wheel,
        )  # fmt: skip
        partial.rename(dependencies)
    for path in dependencies.glob("*.whl"):
        if not path.name.startswith("corral-"):
            shutil.copy2(path, folder)
    return folder


@pytest.fixture(scope="module")
def greeter_image(
    base_image: str, wheelhouse: Path, runtime: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """examples/hello exported with the base image and wheelhouse, the greeter built."""
    system = tmp_path_factory.mktemp("hello") / "hello"
    shutil.copytree(
        ROOT / "examples" / "hello",
        system,
        ignore=shutil.ignore_patterns("deploy", ".corral", "__pycache__"),
    )
    shutil.copytree(wheelhouse, system / "wheelhouse")
    _run(
        Path(sys.executable).parent / "corral", "export", "docker", "-f", system / "corral.yaml",
        "--base-image", base_image, "--wheelhouse", "wheelhouse",
    )  # fmt: skip
    dockerfile = system / "deploy" / "docker" / "greeter.Dockerfile"
    _run(
        "podman", "build", "--runtime", runtime, "--network", "none", "--format", "docker",
        "-f", dockerfile, "--ignorefile", f"{dockerfile}.dockerignore", "-t", IMAGE, system,
    )  # fmt: skip
    return IMAGE


@pytest.fixture
def greeter(greeter_image: str, runtime: Path) -> Iterator[tuple[str, int]]:
    """The greeter container on the host network, on a free port, ready."""
    port = free_port()
    name = f"corral-test-greeter-{port}"
    _run(
        "podman", "run", "--detach", "--name", name, "--runtime", runtime,
        "--network", "host", "--stop-timeout", str(GRACE),
        "-e", "HOST=127.0.0.1", "-e", f"PORT={port}", "-e", "CORRAL_SYSTEM=hello",
        "-e", "CORRAL_SERVICE=greeter", "-e", f"CORRAL_INSTANCE=greeter-{port}",
        greeter_image,
    )  # fmt: skip
    try:
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, "greeter ready", 60)
        yield name, port
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return None


def test_exported_greeter_serves_as_its_user_passes_healthcheck_and_stops_on_sigterm(
    greeter: tuple[str, int], runtime: Path
) -> None:
    """The built image answers /hello, runs as uid 10001, its HEALTHCHECK passes, and
    podman stop's SIGTERM ends it cleanly (exit 0, not the SIGKILL after the grace)."""
    name, port = greeter
    answer = httpx.get(f"http://127.0.0.1:{port}/hello/ada", timeout=5.0)
    assert answer.status_code == 200, answer.text
    assert "ada" in answer.text.lower()
    assert _run("podman", "exec", name, "id", "-u").stdout.strip() == "10001"
    _run("podman", "healthcheck", "run", name)
    _run("podman", "stop", "--time", str(GRACE), name, timeout=GRACE + 30)
    state = json.loads(_run("podman", "inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state
