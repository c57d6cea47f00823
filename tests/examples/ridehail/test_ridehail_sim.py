"""`ridehail sim` against the real system: riders and drivers in parallel, then a drain,
and the invariants it checks hold (every completed ride paid exactly once, no driver on
two rides, no ride left in a non-final state, no unexplained dead letter)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from ridehail_people import admin, city
from ridehail_system import running_system

from corral.broker import control_url

pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.timeout(180)]


async def paid_rides(gateway: str, at_least: int, within: float = 60) -> int:
    """How many payments are captured, once there are ``at_least``."""
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        ops = await admin(http)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            payments = (await ops.call("GET", "/payments/all")).json()
            captured = sum(p["status"] == "captured" for p in payments)
            if captured >= at_least:
                return captured
            await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} rides paid within {within}s")


async def test_a_small_city_keeps_every_invariant_while_the_provider_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The city runs; once rides are being paid, fakepay restarts (a new process); the
    run still ends with every invariant holding: the rides paid before the restart are
    still charged exactly once in the provider's books, and none is charged twice. Its
    output, piped (not a terminal), shows each table once."""
    async with running_system(tmp_path) as (gateway, session):
        nats_url = control_url(session.plan.state_dir)
        report: dict[str, object] = {}
        run = asyncio.create_task(
            city(gateway, nats_url, report, riders=5, drivers=3, duration=8, seed=11)
        )
        await paid_rides(gateway, at_least=1)
        await session.restart("fakepay")
        code = await run
    assert code == 0, report
    counts = report["counts"]
    assert isinstance(counts, dict)
    assert counts["paid"] >= 1, report
    out = capsys.readouterr().out
    assert out.count("ride flow") == 1, out
    assert out.count("ridehail sim ") == 1, out
    assert out.count("API latency per call") == 1, out
    assert "✔ invariants hold" in out
