"""Helpers for the SDK tests (a module, not conftest, so tests can import them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from corral import contract

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"
EXAMPLES = ROOT / "examples" / "hello"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ServedProcess:
    """``python -m corral.sdk.serve`` in a subprocess, stdout captured to a file."""

    def __init__(
        self, target: str, cwd: Path, env: dict[str, str], log: Path, *, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        full_env = {
            **os.environ,
            contract.HOST: "127.0.0.1",
            contract.PORT: str(self.port),
            **env,
        }
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral.sdk.serve", target],
            cwd=cwd,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited early:\n{self.output()}")
        try:
            return httpx.get(self.base_url + contract.READINESS_PATH, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(self.ready, timeout, f"{self.base_url} to be ready")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
