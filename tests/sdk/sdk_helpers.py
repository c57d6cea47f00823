"""Helpers for the SDK tests (a module, not conftest, so tests can import them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from corral import contract
from testkit import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"
EXAMPLES = ROOT / "examples" / "hello"


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
        wait_for(self.ready, timeout=timeout, what=f"{self.base_url} to be ready")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
