"""`ridehail sim` against the real system: riders and drivers in parallel, then a drain,
and the invariants it checks hold (every completed ride paid exactly once, no driver on
two rides, no ride left in a non-final state, no unexplained dead letter)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD
from ridehail_cli.sim import simulate
from ridehail_system import running_system

pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.timeout(180)]


async def test_a_small_city_keeps_every_invariant(tmp_path: Path) -> None:
    async with running_system(tmp_path) as (gateway, session):
        nats_url = session.status().nats_url
        report: dict[str, object] = {}
        code = await simulate(
            gateway,
            riders=5,
            drivers=3,
            duration=5,
            drain=30,
            cancel_rate=0.1,
            speed=4,
            seed=11,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            nats_url=nats_url,
            report=report,
        )
    assert code == 0, report
    assert report, "the sim reports what it measured"
