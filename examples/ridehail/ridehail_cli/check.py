"""`ridehail check`: the simulator's invariants over every ride the system holds, without
simulating anything (a chaos experiment's probe: before and after its faults).

Exit status: 0 they hold, 1 one does not, 2 the system could not be talked to. With
``--all-paid`` a ride whose payment is parked in the dead letters is a failure too (after
a replay, every completed ride must be paid); with ``--expect-parked``, finding none
parked is (during a provider outage, some must be).
"""

from __future__ import annotations

import httpx

from ridehail_cli.api import ApiError, Person
from ridehail_cli.invariants import judge
from ridehail_cli.output import console
from ridehail_cli.sim import BusUnreachable, DeadLetters

RIDES_LIMIT = 1000


async def check(
    gateway: str,
    *,
    admin_email: str,
    admin_password: str,
    nats_url: str | None,
    all_paid: bool,
    expect_parked: bool = False,
) -> int:
    try:
        async with httpx.AsyncClient(base_url=gateway, timeout=15) as http:
            admin = await Person.admin(http, admin_email, admin_password)
            rides = (await admin.call("GET", f"/rides?limit={RIDES_LIMIT}")).json()
            charges = (await admin.call("GET", "/admin/fakepay/charges")).json()["charges"]
            payments = {p["ride_id"]: p for p in (await admin.call("GET", "/payments/all")).json()}
            busy = (await admin.call("GET", "/admin/matching/assignments")).json()
        letters = None
        if nats_url:
            bus = DeadLetters(nats_url)
            bus.last_before = 0  # every dead letter there is
            letters = await bus.since_start()
    except (httpx.HTTPError, ApiError, BusUnreachable) as exc:
        console.print(f"[red]ridehail check: cannot read the system: {exc}[/]")
        return 2
    verdict = judge({r["id"]: r for r in rides}, charges, payments, busy, letters)
    if all_paid and verdict.parked:
        verdict.failures.append(
            f"{len(verdict.parked)} completed rides not paid (parked in the dead letters)"
        )
    if expect_parked and not verdict.parked:
        verdict.failures.append("no payment is parked in the dead letters (expected some)")
    for failure in verdict.failures:
        console.print(f"[red]✘ {failure}[/]")
    if not verdict.holds:
        return 1
    parked = f", {len(verdict.parked)} payments parked" if verdict.parked else ""
    console.print(
        f"[green]✔ invariants hold over {len(rides)} rides{parked}[/]"
        + ("" if letters is not None else " (dead letters not checked: no NATS URL)")
    )
    return 0
