"""The exported stack of ``examples/hello`` on a real single-node Docker Swarm, for the
Swarm column of the conformance suite: exported with ``corral export swarm --offline``
(with the suite's secrets overlay), every image built with no network from the written
Dockerfiles and wheelhouse (Envoy's from its wheel), ``docker stack deploy`` converged,
the gateway on a free host-mode port.

Fails (never skips) when docker is missing or its daemon is down: CI installs and starts
it (.ci/run). A swarm this module created is left again; one it found stays."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conformance_helpers import OVERLAY, SECRET, add_overlay
from ruamel.yaml import YAML

from corral.images import Engine, ensure_base_image
from testkit import corral, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
TAG = "swarm-test"


def docker(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: Mapping[str, str] | None = None
) -> str:
    """``docker ARGS``; its output, or the test fails with what docker said."""
    result = subprocess.run(
        ["docker", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DOCKER_BUILDKIT": "0", **(env or {})},  # Debian's: no buildx
        check=False,
    )
    assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@contextmanager
def single_node_swarm() -> Iterator[None]:
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
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        if created:
            docker("swarm", "leave", "--force")


def export_hello(folder: Path) -> tuple[Path, int]:
    """hello with the suite's overlay and its gateway on a free port, exported offline;
    its images built. (The system's folder, the gateway's port.)"""
    system = folder / "hello"
    shutil.copytree(
        ROOT / "examples" / "hello",
        system,
        ignore=shutil.ignore_patterns(".corral", "deploy", "__pycache__"),
    )
    add_overlay(system)
    port = free_port()
    manifest = system / "corral.yaml"
    manifest.write_text(
        manifest.read_text().replace("gateway:\n", f"gateway:\n  port: {port}\n", 1)
    )
    result = corral(
        "export", "swarm", "--offline", "--env", OVERLAY, "--tag", TAG, cwd=system, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    asyncio.run(ensure_base_image(Engine.find("docker"), print))
    compose: dict[str, Any] = YAML(typ="safe").load(system / "deploy/compose/compose.yaml")
    for spec in compose["services"].values():
        if "build" in spec:
            docker("build", "--network", "none", "-q", "-f", spec["build"]["dockerfile"],
                   "-t", spec["image"], ".", cwd=system, timeout=600)  # fmt: skip
    return system, port


@dataclass
class Stack:
    """A deployed stack of hello."""

    name: str
    folder: Path
    port: int

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.gateway}{path}", timeout=5.0)

    def service(self, service: str) -> str:
        return f"{self.name}_{service}"

    def replicas(self) -> dict[str, str]:
        out = docker("stack", "services", self.name, "--format", "{{.Name}} {{.Replicas}}")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def converged(self) -> bool:
        replicas = self.replicas()
        return bool(replicas) and all(
            r.split("/")[0] == r.split("/")[1].split(" ")[0] for r in replicas.values()
        )

    def containers(self, service: str, *, every: bool = False) -> list[dict[str, Any]]:
        """``docker inspect`` of the service's task containers (running ones, or all)."""
        ids = docker(
            "ps", *(["-a"] if every else []), "-q", "--no-trunc",
            "--filter", f"label=com.docker.swarm.service.name={self.service(service)}",
        ).split()  # fmt: skip
        if not ids:
            return []
        inspected: list[dict[str, Any]] = json.loads(docker("inspect", *ids))
        return inspected

    def healthy(self, service: str, count: int) -> list[dict[str, Any]] | None:
        """The service's running containers when there are ``count``, all healthy."""
        running = [c for c in self.containers(service) if c["State"]["Running"]]
        ok = len(running) == count and all(
            c["State"].get("Health", {}).get("Status") == "healthy" for c in running
        )
        return running if ok else None

    def answer(self, path: str) -> httpx.Response | None:
        try:
            response = self.get(path)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None


def deploy(folder: Path, port: int, name: str, secret_value: str) -> Iterator[Stack]:
    """``docker stack deploy`` of the exported stack (the secret in the deploying shell's
    environment, as ``${VAR:?}`` requires), converged and answering; removed after, and
    nothing of it left."""
    stack = Stack(name, folder / "deploy" / "swarm", port)
    try:
        docker("stack", "deploy", "--resolve-image", "never", "-c", "stack.yaml", name,
               cwd=stack.folder, env={SECRET: secret_value})  # fmt: skip
        wait_for(stack.converged, timeout=180, every=1.0,
                 what=f"every service of {name} at its replicas")  # fmt: skip
        wait_for(lambda: stack.answer("/greet/ada"), timeout=90, every=0.5,
                 what="front calling greeter through the gateway")  # fmt: skip
        # The gateway's own greeter cluster resolves by DNS on its refresh interval and
        # health-checks new addresses first: it may trail front's client by seconds.
        wait_for(lambda: stack.answer("/hello/ada"), timeout=90, every=0.5,
                 what="the gateway routing to greeter")  # fmt: skip
        yield stack
    finally:
        subprocess.run(["docker", "stack", "rm", name], capture_output=True, timeout=60,
                       check=False)  # fmt: skip
    wait_for(lambda: _left(name), timeout=90, every=1.0, what=f"{name} removed")


def _left(stack: str) -> bool:
    label = f"label=com.docker.stack.namespace={stack}"
    services = docker("service", "ls", "-q", "--filter", label)
    networks = docker("network", "ls", "-q", "--filter", label)
    return not services.strip() and not networks.strip()


__all__ = ["Stack", "deploy", "docker", "export_hello", "single_node_swarm"]
