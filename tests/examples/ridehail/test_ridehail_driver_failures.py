"""When a driver errs, leaves or vanishes, end to end through the gateway: the simulated
driver resumes its ride after an error, and the system's rule for a vanished driver
(examples/ridehail/README.md, "A driver who vanishes") moves every ride on.

The system here waits an hour for a matched driver to set off, so only going off duty can
reassign a matched ride within a test; the pickup and ride timeouts are short (8 s).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from ridehail_cli.api import Person
from ridehail_cli.sim import CITY, Stats, driver_loop
from ridehail_people import admin, available, eventually, offline, person
from ridehail_system import running_system

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(240),
]

TIMEOUT_S = 8


def timeouts(text: str) -> str:
    return (
        text.replace("MATCH_ACCEPT_TIMEOUT_S: 60", "MATCH_ACCEPT_TIMEOUT_S: 3600")
        .replace("PICKUP_TIMEOUT_S: 900", f"PICKUP_TIMEOUT_S: {TIMEOUT_S}")
        .replace("MAX_RIDE_S: 14400", f"MAX_RIDE_S: {TIMEOUT_S}")
        .replace("FAKEPAY_LATENCY_MS: 20", "FAKEPAY_LATENCY_MS: 0")
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with running_system(tmp_path_factory.mktemp("ridehail"), edit=timeouts) as (url, _):
        yield url


@pytest_asyncio.fixture(loop_scope="module")
async def http(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as client:
        yield client


async def on_duty(driver: Person, lat: float, lng: float) -> None:
    await available(driver, {"lat": lat, "lng": lng})


async def request(rider: Person, lat: float, lng: float) -> str:
    here = {"lat": lat, "lng": lng}
    ride = (await rider.call("POST", "/rides", json={"pickup": here, "dropoff": here})).json()
    return str(ride["id"])


class FailOnce(httpx.AsyncBaseTransport):
    """The real network, except that the first ``method path`` gets the 503 problem the
    gateway answers while the service behind it restarts."""

    def __init__(self, method: str, path: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.method, self.path = method, path
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.failed and (request.method, request.url.path) == (self.method, self.path):
            self.failed += 1
            problem = {"title": "Service Unavailable", "status": 503, "detail": "restarting"}
            headers = {"content-type": "application/problem+json"}
            return httpx.Response(503, json=problem, headers=headers, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_simulated_driver_resumes_its_ride_after_one_error(
    gateway: str, http: httpx.AsyncClient
) -> None:
    """One 503 mid-ride (a position report while tracking restarts): the simulated driver
    resumes the ride where it is, in progress, and completes it. (It used to give the
    ride up: in progress forever, as serving only started from matched.)"""
    flaky = FailOnce("POST", "/tracking/positions")
    async with httpx.AsyncClient(base_url=gateway, timeout=15, transport=flaky) as client:
        driver = await person(client, "driver")
        rider = await person(http, "rider")
        stop = asyncio.Event()
        stats = Stats()
        driving = asyncio.create_task(
            driver_loop(driver, stats, random.Random(3), stop, time.monotonic() + 60, speed=20)
        )
        try:
            centre = ((CITY[0] + CITY[2]) / 2, (CITY[1] + CITY[3]) / 2)
            ride_id = await request(rider, *centre)
            done = await eventually(
                rider, f"/rides/{ride_id}", lambda r: r["status"] == "completed"
            )
        finally:
            stop.set()
            await asyncio.wait_for(driving, 30)
    assert flaky.failed == 1
    assert stats.errors["ApiError 503"] == 1
    assert done["driver_id"] == driver.id


async def test_a_matched_driver_going_off_duty_is_replaced_at_once(
    http: httpx.AsyncClient,
) -> None:
    """Matched, then off duty before setting off: the ride goes to the next driver now
    (not after the accept timeout, an hour here), and the first may not act on it."""
    rider = await person(http, "rider")
    leaving, next_one = await person(http, "driver"), await person(http, "driver")
    await on_duty(leaving, 59.9139, 10.7522)  # Oslo
    ride_id = await request(rider, 59.9140, 10.7522)
    await eventually(rider, f"/rides/{ride_id}", lambda r: r["driver_id"] == leaving.id)
    await on_duty(next_one, 59.9150, 10.7522)
    answer = await leaving.call("PUT", "/drivers/me/availability", json={"available": False})
    assert answer.json()["ride_id"] == ride_id  # told which ride they leave
    matched = await eventually(
        rider,
        f"/rides/{ride_id}",
        lambda r: r["status"] == "matched" and r["driver_id"] == next_one.id,
    )
    assert matched["matched_at"] is not None
    late = await leaving.call("POST", f"/rides/{ride_id}/arrive", ok=(404,))
    assert late.status_code == 404
    await next_one.call("POST", f"/rides/{ride_id}/arrive")
    await rider.call("POST", f"/rides/{ride_id}/cancel")
    await offline(next_one)


async def test_a_driver_who_never_picks_the_rider_up_is_replaced(
    http: httpx.AsyncClient,
) -> None:
    """On the way, then silent past the pickup timeout: the ride goes to another driver,
    and the vanished one is off duty and may no longer start it."""
    rider = await person(http, "rider")
    vanished, next_one = await person(http, "driver"), await person(http, "driver")
    await on_duty(vanished, 38.7223, -9.1393)  # Lisbon
    ride_id = await request(rider, 38.7224, -9.1393)
    await eventually(rider, f"/rides/{ride_id}", lambda r: r["driver_id"] == vanished.id)
    await vanished.call("POST", f"/rides/{ride_id}/arrive")
    await on_duty(next_one, 38.7230, -9.1393)
    await eventually(
        rider,
        f"/rides/{ride_id}",
        lambda r: r["status"] == "matched" and r["driver_id"] == next_one.id,
    )
    late = await vanished.call("POST", f"/rides/{ride_id}/start", ok=(404,))
    assert late.status_code == 404
    ops = await admin(http)
    assert vanished.id not in (await ops.call("GET", "/admin/matching/drivers")).json()
    await rider.call("POST", f"/rides/{ride_id}/cancel")
    await offline(next_one)


async def test_a_driver_lost_mid_ride_ends_it_cancelled_and_uncharged(
    http: httpx.AsyncClient,
) -> None:
    """In progress, then silent past the longest ride: cancelled with the reason (nobody
    can take over with the rider in the car), never charged, and the driver off duty,
    so the next ride nearby is not theirs."""
    rider = await person(http, "rider")
    lost = await person(http, "driver")
    await on_duty(lost, 48.2082, 16.3738)  # Vienna
    ride_id = await request(rider, 48.2083, 16.3738)
    await eventually(rider, f"/rides/{ride_id}", lambda r: r["driver_id"] == lost.id)
    for step in ("arrive", "start"):
        await lost.call("POST", f"/rides/{ride_id}/{step}")
    ended = await eventually(rider, f"/rides/{ride_id}", lambda r: r["status"] == "cancelled")
    assert ended["ended_reason"] == f"the driver lost contact: not completed within {TIMEOUT_S}s"
    assert ended["completed_at"] is None
    assert ended["fare"] is None
    ops = await admin(http)
    await eventually(ops, "/admin/matching/assignments", lambda a: ride_id not in a)
    assert lost.id not in (await ops.call("GET", "/admin/matching/drivers")).json()
    next_ride = await request(rider, 48.2083, 16.3738)
    await eventually(ops, "/admin/matching/waiting", lambda w: next_ride in str(w))
    assert (await rider.call("GET", f"/rides/{next_ride}")).json()["driver_id"] is None
    payment = await rider.call("GET", f"/payments?ride_id={ride_id}", ok=(404,))
    assert payment.status_code == 404
    charges = (await ops.call("GET", f"/admin/fakepay/charges?reference={ride_id}")).json()
    assert charges["charges"] == []
    await rider.call("POST", f"/rides/{next_ride}/cancel")
