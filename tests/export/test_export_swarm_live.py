"""The exported stack on a real single-node Docker Swarm: ``examples/hello`` exported with
``corral export swarm --offline``, every image built with no network from the written
Dockerfiles and wheelhouse (Envoy's from its wheel), ``docker stack deploy`` converged,
the gateway answering on its host-mode port, then ``docker stack rm`` and nothing left.

Fails (never skips) when docker is missing or its daemon is down: CI installs and starts
it (.ci/run). A swarm this test created is left again; one it found stays."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from corral.images import Engine, ensure_base_image
from testkit import corral, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TAG = "swarm-test"


def _docker(*args: str, cwd: Path | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        ["docker", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},  # Debian's client has no buildx
        check=False,
    )
    assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: apt-get install docker.io (CI's .ci/run does)")
    probe = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.fail(f"the Docker daemon is not running (start dockerd): {probe.stderr.strip()}")
    created = probe.stdout.strip() == "inactive"
    if created:
        _docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        if created:
            _docker("swarm", "leave", "--force")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """hello, its gateway on a free port, exported offline; its images built."""
    system = tmp_path_factory.mktemp("swarm") / "hello"
    shutil.copytree(ROOT / "examples" / "hello", system)
    port = free_port()
    manifest = system / "corral.yaml"
    manifest.write_text(
        manifest.read_text().replace("gateway:\n", f"gateway:\n  port: {port}\n", 1)
    )
    result = corral("export", "swarm", "--offline", "--tag", TAG, cwd=system, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    asyncio.run(ensure_base_image(Engine.find("docker"), print))
    compose: dict[str, Any] = YAML(typ="safe").load(system / "deploy/compose/compose.yaml")
    for spec in compose["services"].values():
        if "build" in spec:
            _docker("build", "--network", "none", "-q", "-f", spec["build"]["dockerfile"],
                    "-t", spec["image"], ".", cwd=system, timeout=600)  # fmt: skip
    return system, port


def _replicas(stack: str) -> dict[str, str]:
    out = _docker("stack", "services", stack, "--format", "{{.Name}} {{.Replicas}}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def _converged(stack: str) -> bool:
    replicas = _replicas(stack)
    return bool(replicas) and all(
        r.split("/")[0] == r.split("/")[1].split(" ")[0] for r in replicas.values()
    )


def _answer(url: str) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=3.0)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def _left(stack: str) -> bool:
    label = f"label=com.docker.stack.namespace={stack}"
    services = _docker("service", "ls", "-q", "--filter", label)
    networks = _docker("network", "ls", "-q", "--filter", label)
    return not services.strip() and not networks.strip()


def test_exported_stack_converges_serves_through_the_gateway_and_is_removed(
    swarm: None, exported: tuple[Path, int]
) -> None:
    system, port = exported
    stack = f"hello-{os.getpid()}"
    folder = system / "deploy" / "swarm"
    try:
        _docker("stack", "deploy", "--resolve-image", "never", "-c", "stack.yaml", stack,
                cwd=folder)  # fmt: skip
        wait_for(lambda: _converged(stack), timeout=120, every=1.0,
                 what=f"every service of {stack} at its replicas")  # fmt: skip
        assert _replicas(stack)[f"{stack}_greeter"].startswith("2/2")
        hello = wait_for(lambda: _answer(f"http://127.0.0.1:{port}/hello/ada"), timeout=60,
                         every=0.5, what="the gateway's /hello route")  # fmt: skip
        assert hello.status_code == 200
        greet = wait_for(lambda: _answer(f"http://127.0.0.1:{port}/greet/ada"), timeout=60,
                         every=0.5, what="front calling greeter by its DNS name")  # fmt: skip
        assert greet.status_code == 200
    finally:
        subprocess.run(["docker", "stack", "rm", stack], capture_output=True, timeout=60,
                       check=False)  # fmt: skip
    wait_for(lambda: _left(stack), timeout=60, every=1.0, what=f"{stack} removed")
