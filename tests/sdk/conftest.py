"""Fixtures for the SDK tests: free ports, a real PostgreSQL server, subprocess services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from corral import contract

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"
PG_ADMIN_URL = os.environ.get("CORRAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: object, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ServedProcess:
    """``python -m corral.sdk.serve`` in a subprocess, stdout captured to a file."""

    def __init__(self, target: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
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


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[object]:
    started: list[ServedProcess] = []

    def start(target: str, *, cwd: Path = APPS, env: dict[str, str] | None = None) -> ServedProcess:
        served = ServedProcess(target, cwd, env or {}, tmp_path / f"serve-{len(started)}.log")
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
async def pg_admin_url() -> AsyncIterator[str]:
    """A superuser URL of the real PostgreSQL server (skips when none runs)."""
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    await conn.close()
    return PG_ADMIN_URL


@pytest.fixture
def unique() -> str:
    """A name unique to this test run (for databases and roles on the shared server)."""
    return "t" + uuid.uuid4().hex[:10]
