"""The people of the end-to-end tests: sign-up, the admin, and waiting for what they see
(every call through the gateway, as the apps make them)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD, Person


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
