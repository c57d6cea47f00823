"""One system per runtime for the conformance scenarios: examples/hello copied, started
with ``corral up -d --runtime R`` as a person would, and taken down after."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import testkit
from corral.api import ApiClient

ROOT = Path(__file__).resolve().parents[2]

FIXTURES = Path(__file__).parent / "fixtures"
OVERLAY = "conformance"
"""``fixtures/corral.conformance.yaml``, merged over hello's manifest (``--env``)."""
SECRET = "GREETER_SIGNING_KEY"
"""The secret the overlay declares on greeter (the variable greeter gets)."""
SECRET_SOURCE = "HELLO_SIGNING_KEY_SOURCE"
"""The variable of ``corral up``'s environment the secret is read from."""
SECRET_VALUE = f"conformance-secret-{secrets.token_hex(8)}"
"""This test run's value: found nowhere but in greeter's environment."""


def add_overlay(root: Path) -> None:
    """Put the suite's overlay beside the system's manifest."""
    name = f"corral.{OVERLAY}.yaml"
    shutil.copy2(FIXTURES / name, root / name)


def corral(
    *args: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return testkit.corral(*args, cwd=cwd, timeout=timeout, env=env)


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60, what: str) -> Any:
    return testkit.wait_for(predicate, timeout=timeout, what=what, every=0.1)


def require_engine(runtime: str) -> None:
    """Fail (never skip) with what to install or start when the engine cannot run."""
    if runtime == "process":
        return
    if shutil.which(runtime) is None:
        pytest.fail(f"{runtime} is not installed: `bash .ci/run` installs it (apt-get install "
                    f"{'docker.io' if runtime == 'docker' else 'podman runc'})")  # fmt: skip
    probe = subprocess.run([runtime, "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.fail(f"{runtime} does not answer (`{runtime} info`): {probe.stderr.strip()[-300:]}")


@dataclass
class System:
    runtime: str
    root: Path
    api: ApiClient

    @property
    def gateway(self) -> str:
        url = self.api.status().gateway_url
        assert url is not None
        return url

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.gateway}{path}", timeout=5.0)

    def records(self, service: str) -> list[Any]:
        return [r for r in self.api.instances() if r.service == service]


def hello_system(runtime: str, folder: Path) -> Iterator[System]:
    require_engine(runtime)
    root = folder / "hello"
    shutil.copytree(
        ROOT / "examples" / "hello",
        root,
        ignore=shutil.ignore_patterns(".corral", "deploy", "__pycache__"),
    )
    add_overlay(root)
    env = {"XDG_RUNTIME_DIR": str(folder / "run"), SECRET_SOURCE: SECRET_VALUE}
    # The first container run builds the wheelhouse and images (minutes on a new machine).
    try:
        up = corral(
            "up", "-d", "--runtime", runtime, "--env", OVERLAY, cwd=root, timeout=1200, **env
        )
        assert up.returncode == 0, up.stdout + up.stderr
        with ApiClient.for_state_dir(root / ".corral") as api:
            yield System(runtime, root, api)
    finally:  # also after a failed up: nothing of it may keep running
        down = corral("down", cwd=root, timeout=120, **env)
    assert down.returncode == 0, down.stdout + down.stderr


def containers(runtime: str, state_dir: Path) -> list[dict[str, Any]]:
    """The engine's containers of a run (by the corral.state label)."""
    # "{{json .}}", not "json": Debian's docker 20.10 client prints the word "json".
    out = subprocess.run(
        [runtime, "ps", "-a", "--filter", f"label=corral.state={state_dir}",
         "--format", "{{json .}}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    try:  # podman: one (indented) array
        whole = json.loads(out)
    except json.JSONDecodeError:  # docker: an object a line
        return [json.loads(line) for line in out.strip().splitlines()]
    return list(whole) if isinstance(whole, list) else [whole]
