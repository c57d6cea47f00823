"""Crash safety against real nats-servers and real processes: SIGKILL between commit and
publish (and between publish and marking sent), and a broker restarted while a producer
keeps publishing through its outbox."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from events.helpers import NatsServer, delete_streams, stored

APP = Path(__file__).with_name("outbox_app.py")
ROOT = Path(__file__).parents[3]


def run_app(*args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, str(APP), *args, *(["--crash", crash] if crash else [])]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def cleanup(nats_url: str, system: str) -> AsyncIterator[None]:
    yield
    await delete_streams(nats_url, system)


@pytest.mark.parametrize("crash", ["after-commit", "after-publish"])
async def test_outbox_survives_sigkill(
    crash: str, nats_url: str, system: str, tmp_path: Path, cleanup: None
) -> None:
    """Killed with SIGKILL after commit (or after publish, before marking sent), the
    restarted producer delivers the committed event exactly once."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'rides.sqlite3'}"
    first = run_app("publish", nats_url, system, db, crash=crash)
    assert first.returncode == -signal.SIGKILL, first.stderr
    engine = create_async_engine(db)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("select count(*) from corral_outbox where sent_at is null"))
        ).scalar_one()
    await engine.dispose()
    assert rows == 1, "the committed event must still wait in the outbox"
    expected = 0 if crash == "after-commit" else 1
    assert await stored(nats_url, system, "ride.requested") == expected
    second = run_app("relay", nats_url, system, db)
    assert second.returncode == 0, second.stderr
    assert "drained" in second.stdout
    assert await stored(nats_url, system, "ride.requested") == 1, (
        "exactly once: de-duplicated by event id"
    )


async def test_broker_restart_loses_no_committed_event(tmp_path: Path, system: str) -> None:
    """A nats-server killed and restarted while a producer commits 200 events through its
    outbox: every committed event ends up in the stream, once."""
    server = NatsServer(tmp_path / "nats").start()
    db = f"sqlite+aiosqlite:///{tmp_path / 'rides.sqlite3'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # stderr goes to a file, not an unread pipe: a producer logging reconnect errors
    # while the test waits on its stdout must never block on a full pipe.
    errors = tmp_path / "producer.err"
    with errors.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(APP),
            "stream",
            server.url,
            system,
            db,
            "200",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    stdout = proc.stdout

    async def until_committed(n: int) -> None:
        """Read the producer's progress until event ``n`` is committed (fail on EOF)."""
        while True:
            line = (await stdout.readline()).decode().strip()
            if not line:
                await proc.wait()
                raise AssertionError(f"producer ended early: {errors.read_text()[-2000:]}")
            if line.isdigit() and int(line) >= n:
                return

    try:
        await asyncio.wait_for(until_committed(50), 60)
        server.kill()  # SIGKILL mid-stream
        await asyncio.wait_for(until_committed(100), 60)
        await asyncio.to_thread(server.start, 30.0)  # same port, same store
        rest = (await asyncio.wait_for(proc.communicate(), 90))[0].decode()
        assert "drained" in rest.splitlines(), rest + errors.read_text()[-2000:]
        assert proc.returncode == 0
        # "drained" means every row was acknowledged, so stored already: exact, once.
        assert await stored(server.url, system, "ride.requested") == 200
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.kill()
