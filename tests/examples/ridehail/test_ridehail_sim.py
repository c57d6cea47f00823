"""`ridehail sim` against the real system: riders and drivers in parallel, then a drain,
and the invariants it checks hold (every completed ride paid exactly once, no driver on
two rides, no ride left in a non-final state, no unexplained dead letter)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD
from ridehail_cli.sim import simulate
from ridehail_people import admin
from ridehail_system import running_system

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
    tmp_path: Path,
) -> None:
    """The city runs; once rides are being paid, fakepay restarts (a new process); the
    run still ends with every invariant holding: the rides paid before the restart are
    still charged exactly once in the provider's books, and none is charged twice."""
    async with running_system(tmp_path) as (gateway, session):
        nats_url = session.status()["nats_url"]
        report: dict[str, object] = {}
        run = asyncio.create_task(
            simulate(
                gateway,
                riders=5,
                drivers=3,
                duration=8,
                drain=30,
                cancel_rate=0.1,
                speed=4,
                seed=11,
                admin_email=ADMIN_EMAIL,
                admin_password=ADMIN_PASSWORD,
                nats_url=nats_url,
                report=report,
            )
        )
        await paid_rides(gateway, at_least=1)
        await session.restart("fakepay")
        code = await run
    assert code == 0, report
    counts = report["counts"]
    assert isinstance(counts, dict)
    assert counts["paid"] >= 1, report
