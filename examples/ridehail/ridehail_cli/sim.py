"""The city simulator: riders request rides, drivers serve them, all through the gateway.

Each rider loops: request a ride (random pickup and dropoff in the city), wait for a
match, wait for completion, wait for the payment; sometimes cancel while waiting. Each
driver loops: go available, wait for an assignment, arrive, drive (posting positions),
start, complete, become available again at the dropoff. After ``--duration`` seconds no
new ride is requested; rides in flight finish (bounded by ``--drain``). Then, as an
admin, the invariants are checked; any failure makes the exit status non-zero.

Simulated people behave like apps on a phone network: a transient error (a 5xx or 429,
a dropped connection: a service restarting behind the gateway) is counted and the same
step is tried again; a driver keeps the ride on hand and resumes it from wherever it is
(matched, on the way, in progress), never leaving it for good on one error.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Group
from rich.live import Live
from rich.table import Table

from ridehail_cli.api import ApiError, Person, Timing, bus_url
from ridehail_cli.invariants import FINAL, Verdict, judge, parked_rides
from ridehail_cli.output import console

CITY = (52.45, 13.30, 52.57, 13.50)  # lat/lng box: central Berlin
HELD = ("matched", "driver_arriving", "in_progress")
"""The states in which a ride is its driver's to move on."""
HEARTBEAT_S = 5.0  # a waiting driver re-confirms availability this often
FLOW = ("requested->matched", "matched->completed", "completed->paid", "requested->paid")
PAYMENT_FAILED = "payment failed"
LETTER_GRACE_S = 10.0
"""How long a just-failed payment's dead letter may take to be stored."""


def somewhere(rng: random.Random) -> dict[str, float]:
    return {"lat": rng.uniform(CITY[0], CITY[2]), "lng": rng.uniform(CITY[1], CITY[3])}


@dataclass
class Stats:
    timing: Timing = field(default_factory=Timing)
    flow: Timing = field(default_factory=Timing)  # requested -> matched -> completed -> paid
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ride_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


def transient(exc: Exception) -> bool:
    """Worth trying again: the network, a service restarting (5xx), a rate limit (429)."""
    if isinstance(exc, ApiError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, httpx.HTTPError)


async def poll(
    person: Person,
    path: str,
    until: Any,
    stop_at: float,
    every: float = 0.15,
    errors: Counter[str] | None = None,
) -> Any:
    """GET ``path`` until ``until(body)``; None at ``stop_at``. Transient errors are
    counted in ``errors`` and polled through, as an app would."""
    while time.monotonic() < stop_at:
        try:
            response = await person.call("GET", path, step="poll", ok=(404,))
        except (ApiError, httpx.HTTPError) as exc:
            if not transient(exc):
                raise
            if errors is not None:
                errors[error_name(exc)] += 1
        else:
            if response.status_code == 200:
                body = response.json()
                if until(body):
                    return body
        await asyncio.sleep(every)
    return None


async def rider_loop(
    rider: Person,
    stats: Stats,
    rng: random.Random,
    until: float,
    drain_until: float,
    cancel_rate: float,
) -> None:
    while time.monotonic() < until:
        try:
            t0 = time.monotonic()
            response = await rider.call(
                "POST",
                "/rides",
                step="request",
                json={"pickup": somewhere(rng), "dropoff": somewhere(rng)},
            )
            ride_id = response.json()["id"]
            stats.ride_ids.append(ride_id)
            stats.counts["requested"] += 1
            wants_cancel = rng.random() < cancel_rate
            if wants_cancel:
                await asyncio.sleep(rng.uniform(0, 0.5))
                cancelled = await rider.call(
                    "POST", f"/rides/{ride_id}/cancel", step="cancel", ok=(409,)
                )
                if cancelled.status_code == 200:
                    stats.counts["cancelled"] += 1
                    continue
            ride = await poll(
                rider,
                f"/rides/{ride_id}",
                lambda r: r["status"] != "requested",
                drain_until,
                errors=stats.errors,
            )
            if ride is None:
                stats.counts["stuck"] += 1
                continue
            if ride["status"] in ("unmatched", "cancelled"):
                stats.counts[ride["status"]] += 1
                continue
            t1 = time.monotonic()
            stats.flow.add("requested->matched", t1 - t0)
            ride = await poll(
                rider,
                f"/rides/{ride_id}",
                lambda r: r["status"] in FINAL,
                drain_until,
                0.3,
                errors=stats.errors,
            )
            if ride is None or ride["status"] != "completed":
                stats.counts["stuck" if ride is None else ride["status"]] += 1
                continue
            t2 = time.monotonic()
            stats.flow.add("matched->completed", t2 - t1)
            stats.counts["completed"] += 1
            paid = await poll(
                rider,
                f"/payments?ride_id={ride_id}",
                lambda p: p["status"] in ("captured", "failed"),
                drain_until,
                0.3,
                errors=stats.errors,
            )
            if paid is not None and paid["status"] == "failed":
                stats.counts[PAYMENT_FAILED] += 1  # the app says so; an operator replays it
            elif paid is not None:
                stats.flow.add("completed->paid", time.monotonic() - t2)
                stats.flow.add("requested->paid", time.monotonic() - t0)
                stats.counts["paid"] += 1
        except (ApiError, httpx.HTTPError) as exc:
            stats.errors[error_name(exc)] += 1
            await asyncio.sleep(0.2)


async def driver_loop(
    driver: Person,
    stats: Stats,
    rng: random.Random,
    stop: asyncio.Event,
    drain_until: float,
    speed: float,
) -> None:
    """Serve rides until told to stop; always go offline at the end, so no later ride is
    matched with a driver who has left (matching also takes silent drivers offline).

    The ride on hand is kept across errors: after a transient one the driver resumes it
    from the state it is in (a 503 while tracking restarts must not leave a ride
    ``in_progress`` forever); a refusal for good (4xx) drops it."""
    where = somewhere(rng)
    ride_id: str | None = None
    try:
        while not stop.is_set() and time.monotonic() < drain_until:
            try:
                if ride_id is None:
                    ride_id = await wait_for_assignment(driver, where, stop, drain_until)
                    if ride_id is None:
                        break
                where = await serve_ride(driver, ride_id, speed) or where
                ride_id = None
            except (ApiError, httpx.HTTPError) as exc:
                stats.errors[error_name(exc)] += 1
                if not transient(exc):
                    ride_id = None
                await asyncio.sleep(0.2)
    finally:
        await leave(driver, stats, speed, drain_until, ride_id)


async def leave(
    driver: Person, stats: Stats, speed: float, drain_until: float, on_hand: str | None
) -> None:
    """Go off duty. A ride the driver has not set off for goes to another driver
    (rides reassigns it); one they are on the way for or driving, they finish first."""
    ride_id = on_hand
    with contextlib.suppress(ApiError, httpx.HTTPError, asyncio.TimeoutError):
        response = await asyncio.wait_for(
            asyncio.shield(
                driver.call(
                    "PUT",
                    "/drivers/me/availability",
                    step="available",
                    json={"available": False},
                    ok=(401, 403, 422),
                )
            ),
            5,
        )
        if response.status_code == 200:
            ride_id = response.json().get("ride_id") or ride_id
    while ride_id and time.monotonic() < drain_until:
        try:
            await serve_ride(driver, ride_id, speed, underway_only=True)
            return
        except (ApiError, httpx.HTTPError) as exc:
            stats.errors[error_name(exc)] += 1
            if not transient(exc):
                return
        await asyncio.sleep(0.2)


async def serve_ride(
    driver: Person, ride_id: str, speed: float, *, underway_only: bool = False
) -> dict[str, float] | None:
    """Drive the ride to completion from the state it is in (matched: arrive first; on
    the way: start; in progress: drive and complete); the dropoff, or None when it is
    not this driver's to drive (not matched yet as far as rides knows, cancelled,
    released to another driver). ``underway_only``: leave a ride not yet set off for."""
    found = await driver.call("GET", f"/rides/{ride_id}", step="poll", ok=(404,))
    ride = found.json()
    if found.status_code == 404 or ride["driver_id"] != driver.id or ride["status"] not in HELD:
        await asyncio.sleep(0.1)
        return None
    status = ride["status"]
    if status == "matched":
        if underway_only:
            return None
        await asyncio.sleep(0.1 / speed)
        if not await step(driver, ride_id, "arrive"):
            return None
        status = "driver_arriving"
    if status == "driver_arriving" and not await step(driver, ride_id, "start"):
        return None
    pickup, dropoff = ride["pickup"], ride["dropoff"]
    for i in range(1, 5):
        point = {k: pickup[k] + (dropoff[k] - pickup[k]) * i / 4 for k in ("lat", "lng")}
        await driver.call("POST", "/tracking/positions", step="position", json={"position": point})
        await asyncio.sleep(0.1 / speed)
    return dict(dropoff) if await step(driver, ride_id, "complete") else None


async def step(driver: Person, ride_id: str, name: str) -> bool:
    """One step of the ride; False when it is no longer the driver's to take (409: the
    rider cancelled meanwhile; 404: the ride went to another driver)."""
    response = await driver.call("POST", f"/rides/{ride_id}/{name}", step=name, ok=(404, 409))
    if response.status_code != 200:
        await asyncio.sleep(0.1)
        return False
    return True


async def wait_for_assignment(
    driver: Person, where: dict[str, float], stop: asyncio.Event, drain_until: float
) -> str | None:
    """Say "available here" (again every few seconds, as a driver app does), and poll
    rides for an assignment; None when told to stop first."""
    heartbeat = 0.0
    while not stop.is_set() and time.monotonic() < drain_until:
        if time.monotonic() - heartbeat >= HEARTBEAT_S:
            response = await driver.call(
                "PUT",
                "/drivers/me/availability",
                step="available",
                json={"available": True, "position": where},
            )
            heartbeat = time.monotonic()
            if ride_id := response.json().get("ride_id"):
                return str(ride_id)
        mine = (await driver.call("GET", "/rides?status=matched&limit=5", step="poll")).json()
        if mine:
            return str(mine[0]["id"])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return None


def error_name(exc: Exception) -> str:
    return type(exc).__name__ + (f" {exc.status}" if isinstance(exc, ApiError) else "")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_table(title: str, samples: dict[str, list[float]]) -> Table:
    table = Table(title=title)
    for column in ("step", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for step, values in samples.items():
        if not values:
            table.add_row(step, "0", "-", "-", "-", "-")
            continue
        table.add_row(
            step,
            str(len(values)),
            *(f"{pct(values, q) * 1000:.0f}" for q in (0.5, 0.95, 0.99)),
            f"{max(values) * 1000:.0f}",
        )
    return table


def counts_table(stats: Stats, duration: float, phase: str) -> Table:
    elapsed = time.monotonic() - stats.started
    counts = Table(
        title=f"ridehail sim  {elapsed:5.1f}s / {duration:.0f}s  ({phase})", show_header=False
    )
    for key in ("requested", "completed", "paid", PAYMENT_FAILED, "cancelled", "unmatched"):
        counts.add_row(key, str(stats.counts[key]))
    counts.add_row("stuck", str(stats.counts["stuck"]))
    counts.add_row("rides/s (completed)", f"{stats.counts['completed'] / max(elapsed, 1e-9):.2f}")
    counts.add_row("errors", ", ".join(f"{k}: {v}" for k, v in stats.errors.items()) or "0")
    return counts


def progress(stats: Stats, duration: float, phase: str) -> Group:
    """The live view (a terminal only: it is cleared at the end, and the summary is
    printed once, piped or not)."""
    flow = {step: stats.flow.samples.get(step, []) for step in FLOW}
    return Group(counts_table(stats, duration, phase), latency_table("ride flow (live)", flow))


async def check_invariants(admin: Person, stats: Stats, bus: DeadLetters | None) -> Verdict:
    """Fetch what the verdict needs (invariants.judge) through the admin API and the
    dead letters; payments that just failed get a moment for their dead letter, which
    the bus stores right after the payment is marked failed."""
    wanted = set(stats.ride_ids)
    rides = (await admin.call("GET", "/rides?limit=1000", step="check")).json()
    ours = {r["id"]: r for r in rides if r["id"] in wanted}
    for ride_id in wanted - ours.keys():  # older than the newest 1000 rides
        ours[ride_id] = (await admin.call("GET", f"/rides/{ride_id}", step="check")).json()
    charges = (await admin.call("GET", "/admin/fakepay/charges", step="check")).json()["charges"]
    payments = {
        p["ride_id"]: p for p in (await admin.call("GET", "/payments/all", step="check")).json()
    }
    busy = (await admin.call("GET", "/admin/matching/assignments", step="check")).json()
    failed = {
        r
        for r in ours
        if ours[r]["status"] == "completed" and payments.get(r, {}).get("status") == "failed"
    }
    letters = None
    if bus is not None:
        deadline = time.monotonic() + LETTER_GRACE_S
        letters = await bus.since_start()
        while not failed <= parked_rides(letters) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            letters = await bus.since_start()
    return judge(ours, charges, payments, busy, letters)


class BusUnreachable(Exception):
    """The dead-letter stream could not be read."""


class DeadLetters:
    """The system's dead letters that arrive after the run starts, read whole."""

    def __init__(self, nats_url: str, system: str = "ridehail") -> None:
        self.nats_url, self.system = nats_url, system
        self.last_before: int | None = None

    async def start(self) -> None:
        """Note the last dead letter before the run (later ones are the run's)."""
        letters = await self._call("dlq_list")
        self.last_before = max((int(x["seq"]) for x in letters), default=0)

    async def since_start(self) -> list[dict[str, Any]]:
        assert self.last_before is not None, "start() first"
        summaries = await self._call("dlq_list")
        whole = []
        for summary in summaries:
            if int(summary["seq"]) > self.last_before:
                letter = await self._call("dlq_show", int(summary["seq"]))
                if letter is not None:  # purged meanwhile
                    whole.append(letter)
        return whole

    async def _call(self, name: str, *args: Any) -> Any:
        from corral import broker

        try:
            return await asyncio.wait_for(
                getattr(broker, name)(self.nats_url, self.system, *args), 15
            )
        except Exception as exc:  # nats-py raises several unrelated types; report any, once
            raise BusUnreachable(f"{self.nats_url}: {type(exc).__name__} {exc}".strip()) from exc


async def simulate(
    gateway: str,
    *,
    riders: int,
    drivers: int,
    duration: float,
    drain: float,
    cancel_rate: float,
    speed: float,
    seed: int,
    admin_email: str,
    admin_password: str,
    nats_url: str | None,
    report: dict[str, Any] | None = None,
) -> int:
    """Run the city; 0 when every invariant holds, 1 when one fails, 2 when the system
    could not be talked to (one line saying why, never a traceback)."""
    try:
        return await _simulate(
            gateway,
            riders=riders,
            drivers=drivers,
            duration=duration,
            drain=drain,
            cancel_rate=cancel_rate,
            speed=speed,
            seed=seed,
            admin_email=admin_email,
            admin_password=admin_password,
            nats_url=nats_url,
            report=report,
        )
    except httpx.HTTPError as exc:
        where = exc.request.url if isinstance(exc, httpx.RequestError) else gateway
        console.print(f"[red]✘ cannot talk to ridehail at {where}:[/] {type(exc).__name__} {exc}")
    except ApiError as exc:
        console.print(f"[red]✘ the system refused a call the simulator needs:[/] {exc}")
    except BusUnreachable as exc:
        console.print(f"[red]✘ cannot read the dead letters at[/] {exc} (pass --nats-url?)")
    return 2


async def _simulate(
    gateway: str,
    *,
    riders: int,
    drivers: int,
    duration: float,
    drain: float,
    cancel_rate: float,
    speed: float,
    seed: int,
    admin_email: str,
    admin_password: str,
    nats_url: str | None,
    report: dict[str, Any] | None,
) -> int:
    rng = random.Random(seed)
    stats = Stats()
    if nats_url is None:
        nats_url = bus_url()
    bus = DeadLetters(nats_url) if nats_url else None
    if bus is not None:
        await bus.start()
    limits = httpx.Limits(max_connections=max(20, riders + drivers + 5))
    async with httpx.AsyncClient(base_url=gateway, timeout=15, limits=limits) as http:
        console.print(f"signing up {riders} riders and {drivers} drivers through {gateway} ...")
        people = [Person(http, "rider", stats.timing) for _ in range(riders)]
        people += [Person(http, "driver", stats.timing) for _ in range(drivers)]
        gate = asyncio.Semaphore(8)

        async def enrol(person: Person) -> None:
            async with gate:
                await person.signup()
                await person.login()

        await asyncio.gather(*(enrol(p) for p in people))
        admin = await Person.admin(http, admin_email, admin_password)
        stats.started = time.monotonic()
        until = stats.started + duration
        drain_until = until + drain
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                rider_loop(p, stats, random.Random(rng.random()), until, drain_until, cancel_rate)
            )
            for p in people
            if p.role == "rider"
        ]
        driver_tasks = [
            asyncio.create_task(
                driver_loop(p, stats, random.Random(rng.random()), stop, drain_until, speed)
            )
            for p in people
            if p.role == "driver"
        ]
        try:
            # transient: the live view is for a terminal; piped, rich prints a Live's last
            # frame when it stops, and the summary below printed the flow table again.
            with Live(
                progress(stats, duration, "requesting"),
                console=console,
                refresh_per_second=4,
                transient=True,
            ) as live:
                while not all(t.done() for t in tasks):
                    phase = "requesting" if time.monotonic() < until else "draining"
                    live.update(progress(stats, duration, phase))
                    await asyncio.sleep(0.25)
                elapsed = time.monotonic() - stats.started
                stop.set()  # drivers finish, go offline
                await asyncio.wait(driver_tasks, timeout=10)
                live.update(progress(stats, duration, "done"))
        finally:
            stop.set()
            for task in (*tasks, *driver_tasks):
                task.cancel()
            await asyncio.gather(*tasks, *driver_tasks, return_exceptions=True)
        console.print(counts_table(stats, duration, "done"))
        console.print(
            latency_table("API latency per call (through the gateway)", stats.timing.samples)
        )
        console.print(latency_table("ride flow", stats.flow.samples))
        console.print(
            f"completed rides/s: {stats.counts['completed'] / elapsed:.2f}   "
            f"requested rides/s: {stats.counts['requested'] / elapsed:.2f}   over {elapsed:.1f}s"
        )
        verdict = await check_invariants(admin, stats, bus)
    if report is not None:
        report.update(
            elapsed_s=round(elapsed, 2),
            calls=sum(len(v) for v in stats.timing.samples.values()),
            counts=dict(stats.counts),
            errors=dict(stats.errors),
            flow={k: list(v) for k, v in stats.flow.samples.items()},
            failures=verdict.failures,
            parked=verdict.parked,
        )
    return say(verdict, dead_letters_checked=bus is not None)


def say(verdict: Verdict, *, dead_letters_checked: bool) -> int:
    """Print the verdict in words that say what happened; the exit status."""
    if not dead_letters_checked:
        console.print("[yellow]dead letters not checked: no NATS URL (pass --nats-url)[/]")
    if verdict.parked:
        console.print(
            f"[yellow]⚠ {len(verdict.parked)} completed rides not paid: the provider refused "
            "them to the last delivery, so each payment is failed and its ride.completed "
            "waits in the dead letters (nothing lost, nothing charged). Once the provider "
            "is back, `corral events dlq replay -f examples/ridehail` pays each once.[/]"
        )
    for failure in verdict.failures:
        console.print(f"[red]✘ {failure}[/]")
    if not verdict.holds:
        return 1
    paid = "paid exactly once" + (" or parked in the dead letters" if verdict.parked else "")
    console.print(
        f"[green]✔ invariants hold:[/] every completed ride {paid}, no driver on two "
        "rides, no ride stuck, no unexplained dead letter"
    )
    return 0
