"""The scripted tour: a rider and a driver, one ride from request to payment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
from rich.panel import Panel

from ridehail_cli.api import ApiError, Person
from ridehail_cli.output import console

PICKUP = {"lat": 52.5200, "lng": 13.4050}  # Berlin, Alexanderplatz-ish
DROPOFF = {"lat": 52.5070, "lng": 13.3900}
ROUTE = [{"lat": 52.5200 - i * 0.0013, "lng": 13.4050 - i * 0.0015} for i in range(11)]


def show(step: str, response: httpx.Response, keys: tuple[str, ...] = ()) -> Any:
    body = response.json() if response.content else None
    if isinstance(body, dict) and keys:
        body = {k: body.get(k) for k in keys}
    text = json.dumps(body, default=str)
    console.print(
        f"[bold cyan]{step:<34}[/] [dim]{response.request.method} {response.request.url.path}[/]"
        f" -> [green]{response.status_code}[/]  {text[:110]}",
        highlight=False,
    )
    return response.json() if response.content else None


async def wait_for(
    person: Person, path: str, predicate: Any, *, within: float = 30, what: str = ""
) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = await person.call("GET", path, ok=(404,))
        if response.status_code == 200 and predicate(response.json()):
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {within}s for {what or path}")
        await asyncio.sleep(0.2)


async def tour(gateway: str) -> int:
    console.print(Panel.fit(f"ridehail tour through the gateway at [bold]{gateway}[/]"))
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        rider, driver = Person(http, "rider"), Person(http, "driver")
        on_duty = False
        try:
            for who in (rider, driver):
                body = {
                    "email": who.email,
                    "password": "correct-horse-battery",
                    "name": who.role.title(),
                    "role": who.role,
                }
                who.id = show(
                    f"sign up a {who.role}", await who.call("POST", "/auth/signup", json=body)
                )["id"]
                response = await who.call(
                    "POST",
                    "/auth/login",
                    json={"email": who.email, "password": "correct-horse-battery"},
                )
                who.token = response.json()["access_token"]
                show(f"log in the {who.role}", response, ("token_type", "expires_in"))
            show("the signing keys (JWKS)", await rider.call("GET", "/auth/.well-known/jwks.json"))
            show(
                "driver goes available near pickup",
                await driver.call(
                    "PUT",
                    "/drivers/me/availability",
                    json={"available": True, "position": ROUTE[0]},
                ),
            )
            on_duty = True
            response = await rider.call(
                "POST", "/rides", json={"pickup": PICKUP, "dropoff": DROPOFF}
            )
            ride = show(
                "rider requests a ride", response, ("id", "status", "fare_estimate", "currency")
            )
            ride_id = ride["id"]
            response = await wait_for(
                rider, f"/rides/{ride_id}", lambda r: r["status"] != "requested", what="a match"
            )
            show("matched (rider's view)", response, ("status", "driver_id"))
            show(
                "driver is arriving",
                await driver.call("POST", f"/rides/{ride_id}/arrive"),
                ("status",),
            )
            show(
                "driver starts the ride",
                await driver.call("POST", f"/rides/{ride_id}/start"),
                ("status",),
            )
            for point in ROUTE[1:]:
                await driver.call("POST", "/tracking/positions", json={"position": point})
            console.print(
                f"[bold cyan]{'driver drives (10 positions)':<34}[/] "
                "[dim]POST /tracking/positions x10[/]"
            )
            show(
                "rider sees the track",
                await rider.call("GET", f"/tracking/rides/{ride_id}/positions"),
            )
            show(
                "driver completes the ride",
                await driver.call("POST", f"/rides/{ride_id}/complete"),
                ("status", "distance_km", "duration_s"),
            )
            response = await wait_for(
                rider,
                f"/payments?ride_id={ride_id}",
                lambda p: p["status"] == "captured",
                what="the payment",
            )
            show("the payment", response, ("ride_id", "amount", "currency", "status"))
            response = await wait_for(
                rider,
                f"/rides/{ride_id}",
                lambda r: r["payment_status"] == "captured",
                what="the fare",
            )
            show("the ride, paid", response, ("status", "fare", "currency", "payment_status"))
            response = await driver.call("POST", f"/rides/{ride_id}/cancel", ok=(403, 409))
            show("driver tries to cancel (refused)", response, ("status", "title", "detail"))
            # Off duty at the end: a driver left available would be matched with the next
            # rides (a `ridehail sim` right after, say) and never drive them.
            show(
                "driver goes off duty",
                await driver.call("PUT", "/drivers/me/availability", json={"available": False}),
                ("available", "ride_id"),
            )
            on_duty = False
        except (ApiError, TimeoutError, httpx.HTTPError) as exc:
            console.print(f"[red]tour failed:[/] {exc}")
            return 1
        finally:
            if on_duty:  # the tour failed half-way: do not leave the driver matchable
                with contextlib.suppress(ApiError, httpx.HTTPError):
                    await driver.call("PUT", "/drivers/me/availability", json={"available": False})
    console.print("[green]✔[/] tour complete")
    return 0
