"""The people of the end-to-end tests: sign-up, the admin, waiting for what they see
(every call through the gateway, as the apps make them), and a simulated city."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD, Person
from ridehail_cli.sim import simulate


async def person(http: httpx.AsyncClient, role: str) -> Person:
    """A new rider or driver, signed up and logged in."""
    someone = Person(http, role)
    await someone.signup()
    await someone.login()
    return someone


async def admin(http: httpx.AsyncClient) -> Person:
    return await Person.admin(http, ADMIN_EMAIL, ADMIN_PASSWORD)


async def eventually(who: Person, path: str, predicate: Any, within: float = 30) -> Any:
    """GET ``path`` until ``predicate(body)`` holds (404 counts as not yet); the body."""
    deadline = time.monotonic() + within
    body: Any = None
    while time.monotonic() < deadline:
        response = await who.call("GET", path, ok=(404,))
        body = response.json()
        if response.status_code == 200 and predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never satisfied the condition; last: {body}")


async def available(driver: Person, where: dict[str, float]) -> dict[str, Any]:
    """The driver goes on duty at ``where``; matching's answer."""
    response = await driver.call(
        "PUT", "/drivers/me/availability", json={"available": True, "position": where}
    )
    return dict(response.json())


async def offline(driver: Person) -> None:
    await driver.call("PUT", "/drivers/me/availability", json={"available": False})


async def city(
    gateway: str,
    nats_url: str,
    report: dict[str, Any],
    *,
    riders: int,
    drivers: int,
    duration: float,
    seed: int,
    drain: float = 30,
    cancel_rate: float = 0.1,
) -> int:
    """``ridehail sim`` in this process (drivers at 4x speed, the operator's admin); its
    exit status, with what it measured and decided in ``report``."""
    return await simulate(
        gateway,
        riders=riders,
        drivers=drivers,
        duration=duration,
        drain=drain,
        cancel_rate=cancel_rate,
        speed=4,
        seed=seed,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        nats_url=nats_url,
        report=report,
    )
