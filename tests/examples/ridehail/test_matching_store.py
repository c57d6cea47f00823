"""The match store contract, run against memory, SQLite and PostgreSQL; the invariant under
concurrent claims from several replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from contracts.geo import Position
from matching.domain import Claim, Matcher, MatchingRules
from matching.store import MemoryMatchStore, SqlMatchStore, match_rides, metadata
from scratch_postgres import scratch_database
from sqlalchemy import select

from corral.sdk import Database

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
HERE = Position(lat=52.52, lng=13.405)


@contextlib.asynccontextmanager
async def store_factory(kind: str, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """A factory of stores over ONE shared truth: each call is another replica's handle."""
    if kind == "memory":
        shared = MemoryMatchStore()
        yield lambda: shared
        return
    databases: list[Database] = []
    async with contextlib.AsyncExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'matching.db'}"
        else:
            url = await stack.enter_async_context(scratch_database("ridehail_matching"))

        async def replica() -> SqlMatchStore:
            db = Database(metadata=metadata)
            await db.start(url)
            databases.append(db)
            return SqlMatchStore(db)

        try:
            yield replica
        finally:
            for db in databases:
                await db.stop()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with store_factory(request.param, tmp_path) as factory:
        yield factory


@pytest.fixture(params=["sqlite", "postgres"])
async def make_sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Only the stores with transactions."""
    async with store_factory(request.param, tmp_path) as factory:
        yield factory


async def store_of(make_store: Callable[[], Any]) -> Any:
    made = make_store()
    return await made if asyncio.iscoroutine(made) else made


async def test_claim_takes_driver_and_ride_once(make_store: Callable[[], Any]) -> None:
    """A claim succeeds once; the same driver or the same ride cannot be claimed again."""
    store = await store_of(make_store)
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    await store.set_driver("d2", online=True, position=HERE, now=T0)
    assert await store.add_ride("r1", HERE, T0)
    assert await store.add_ride("r2", HERE, T0)
    assert not await store.add_ride("r1", HERE, T0)  # a redelivery
    assert await store.claim("d1", "r1", T0) is Claim.OK
    assert await store.claim("d1", "r2", T0) is Claim.DRIVER_TAKEN
    assert await store.claim("d2", "r1", T0) is Claim.RIDE_GONE
    assert await store.assignments() == {"r1": "d1"}
    assert [w.id for w in await store.waiting()] == ["r2"]
    assert await store.available_drivers() == {"d2": HERE}
    assert await store.free_driver("d2") == HERE
    assert await store.free_driver("d1") is None, "d1 is on a ride"
    assert await store.free_driver("nobody") is None


async def test_offline_or_unknown_driver_cannot_be_claimed(make_store: Callable[[], Any]) -> None:
    """Offline and unknown drivers are refused."""
    store = await store_of(make_store)
    await store.set_driver("off", online=False, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)
    assert await store.claim("off", "r1", T0) is Claim.DRIVER_TAKEN
    assert await store.claim("ghost", "r1", T0) is Claim.DRIVER_TAKEN
    assert [w.id for w in await store.waiting()] == ["r1"]


async def test_close_frees_driver_at_dropoff_and_tombstones(make_store: Callable[[], Any]) -> None:
    """Closing a ride frees its driver where the ride ended; a closed ride never waits again."""
    store = await store_of(make_store)
    dropoff = Position(lat=52.6, lng=13.5)
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)
    await store.claim("d1", "r1", T0)
    assert await store.close_ride("r1", T0, driver_position=dropoff) == "d1"
    assert await store.available_drivers() == {"d1": dropoff}
    assert await store.free_driver("d1") == dropoff
    assert await store.close_ride("early", T0) is None  # cancelled before requested arrived
    assert not await store.add_ride("early", HERE, T0)
    assert await store.waiting() == []


async def test_expire_happens_once_and_runs_hook_in_the_transaction(
    make_store: Callable[[], Any],
) -> None:
    """Only one of several expiries of a waiting ride wins; its hook runs exactly once."""
    store = await store_of(make_store)
    await store.add_ride("r1", HERE, T0)
    calls: list[Any] = []

    async def hook(session: Any) -> None:
        calls.append(session)

    results = [await store.expire("r1", T0, on_commit=hook) for _ in range(3)]
    assert results == [True, False, False]
    assert len(calls) == 1
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    assert await store.claim("d1", "r1", T0) is Claim.RIDE_GONE


async def test_release_puts_the_ride_back_and_the_driver_off_duty(
    make_store: Callable[[], Any],
) -> None:
    """A released ride waits again with a fresh wait; its driver is free and off duty, so
    never proposed; releasing again, or for another driver, or a closed ride, does nothing."""
    store = await store_of(make_store)
    later = T0 + timedelta(seconds=60)
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)
    assert await store.claim("d1", "r1", T0) is Claim.OK
    assert await store.release("r1", "someone-else", later) is None
    waiting = await store.release("r1", "d1", later)
    assert waiting is not None
    assert (waiting.id, waiting.pickup, waiting.requested_at) == ("r1", HERE, later)
    assert [(w.id, w.requested_at) for w in await store.waiting()] == [("r1", later)]
    assert await store.assignments() == {}
    assert await store.available_drivers() == {}  # d1 is off duty
    assert await store.release("r1", "d1", later) is None  # a redelivery
    await store.set_driver("d2", online=True, position=HERE, now=later)
    assert await store.claim("d2", "r1", later) is Claim.OK
    await store.close_ride("r1", later)
    assert await store.release("r1", "d2", later) is None


async def test_concurrent_releases_of_one_ride_have_one_winner(
    make_sql_store: Callable[[], Any],
) -> None:
    """Replicas releasing the same ride concurrently: exactly one wins."""
    stores = [await store_of(make_sql_store) for _ in range(4)]
    await stores[0].set_driver("d1", online=True, position=HERE, now=T0)
    await stores[0].add_ride("r1", HERE, T0)
    assert await stores[0].claim("d1", "r1", T0) is Claim.OK
    results = await asyncio.gather(*(s.release("r1", "d1", T0) for s in stores))
    assert sum(r is not None for r in results) == 1
    assert [w.id for w in await stores[0].waiting()] == ["r1"]


async def test_failed_hook_rolls_the_claim_back(make_sql_store: Callable[[], Any]) -> None:
    """If writing the event fails, the assignment does not happen either (SQL stores: the
    memory store has no transaction to roll back)."""
    store = await store_of(make_sql_store)
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)

    async def broken(session: Any) -> None:
        raise RuntimeError("outbox write failed")

    with pytest.raises(RuntimeError):
        await store.claim("d1", "r1", T0, on_commit=broken)
    assert await store.assignments() == {}
    assert await store.claim("d1", "r1", T0) is Claim.OK


async def test_concurrent_claims_of_one_driver_from_many_replicas(
    make_store: Callable[[], Any],
) -> None:
    """20 rides race for one driver through 4 replicas' own connections: exactly one wins."""
    replicas = [await store_of(make_store) for _ in range(4)]
    await replicas[0].set_driver("d1", online=True, position=HERE, now=T0)
    for i in range(20):
        await replicas[0].add_ride(f"r{i}", HERE, T0)
    verdicts = await asyncio.gather(*(replicas[i % 4].claim("d1", f"r{i}", T0) for i in range(20)))
    assert verdicts.count(Claim.OK) == 1
    assert len(await replicas[0].assignments()) == 1


async def test_several_matchers_never_put_a_driver_on_two_rides(
    make_store: Callable[[], Any],
) -> None:
    """3 matching replicas, 12 drivers, 30 rides arriving concurrently: every assignment is
    one driver on one ride, and exactly min(rides, drivers) rides are matched."""
    rules = MatchingRules(max_pickup_km=50)
    matchers = [Matcher(await store_of(make_store), rules=rules) for _ in range(3)]
    for d in range(12):
        position = Position(lat=HERE.lat + 0.001 * d, lng=HERE.lng)
        # Each replica hears about every driver (as after a sweep): maximal contention.
        for matcher in matchers:
            matcher.index.upsert(f"d{d}", position)
        await matchers[d % 3].store.set_driver(f"d{d}", online=True, position=position, now=T0)
    results = await asyncio.gather(
        *(
            matchers[r % 3].ride_requested(f"r{r}", HERE, T0 + timedelta(milliseconds=r))
            for r in range(30)
        )
    )
    matches = [m for m in results if m is not None]
    # Rides left waiting by a lost race are picked up by the sweep.
    for matcher in matchers:
        swept, _ = await matcher.sweep(T0 + timedelta(seconds=1))
        matches += swept
    drivers = [m.driver_id for m in matches]
    rides = [m.ride_id for m in matches]
    assert len(set(drivers)) == len(drivers) == 12
    assert len(set(rides)) == len(rides) == 12
    assignments = await matchers[0].store.assignments()
    assert assignments == {m.ride_id: m.driver_id for m in matches}
    assert len(await matchers[0].store.waiting()) == 18


async def test_idle_free_drivers_go_offline_busy_ones_stay(make_store: Callable[[], Any]) -> None:
    """A free driver silent since before the cutoff goes offline; a driver on a ride, or
    one who confirmed availability since, stays."""
    store = await store_of(make_store)
    later = T0 + timedelta(minutes=5)
    for driver_id in ("silent", "busy", "fresh"):
        await store.set_driver(driver_id, online=True, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)
    assert await store.claim("busy", "r1", T0) is Claim.OK
    await store.set_driver("fresh", online=True, position=HERE, now=later)
    assert await store.expire_idle_drivers(later - timedelta(minutes=2)) == ["silent"]
    assert set(await store.available_drivers()) == {"fresh"}
    assert await store.expire_idle_drivers(later - timedelta(minutes=2)) == []


async def status_of(store: SqlMatchStore, ride_id: str) -> str | None:
    async with store._db.sessionmaker() as session:
        status: str | None = await session.scalar(
            select(match_rides.c.status).where(match_rides.c.id == ride_id)
        )
        return status


async def test_concurrent_expiries_from_many_replicas_have_one_winner(
    make_sql_store: Callable[[], Any],
) -> None:
    """Every replica's sweep expires the same overdue rides at once: each ride becomes
    unmatched exactly once (one ride.unmatched), whichever replica wins."""
    replicas = [await store_of(make_sql_store) for _ in range(4)]
    rides = [f"r{i}" for i in range(10)]
    for ride_id in rides:
        await replicas[0].add_ride(ride_id, HERE, T0)
    hooks: list[str] = []

    def hook(ride_id: str) -> Any:
        async def run(session: Any) -> None:
            hooks.append(ride_id)

        return run

    for ride_id in rides:
        won = await asyncio.gather(
            *(store.expire(ride_id, T0, on_commit=hook(ride_id)) for store in replicas)
        )
        assert won.count(True) == 1, (ride_id, won)
    assert sorted(hooks) == sorted(rides)


async def test_claim_and_expiry_racing_on_one_ride_have_one_winner(
    make_sql_store: Callable[[], Any],
) -> None:
    """A sweep expires a ride at the moment another replica matches it: the ride is either
    matched (and its driver taken) or unmatched (and its driver free), never both."""
    replicas = [await store_of(make_sql_store) for _ in range(4)]
    for i in range(10):
        ride_id, driver_id = f"r{i}", f"d{i}"
        await replicas[0].set_driver(driver_id, online=True, position=HERE, now=T0)
        await replicas[0].add_ride(ride_id, HERE, T0)
        claims_a, expiry_a, expiry_b, claims_b = await asyncio.gather(
            replicas[1].claim(driver_id, ride_id, T0),
            replicas[2].expire(ride_id, T0),
            replicas[3].expire(ride_id, T0),
            replicas[0].claim(driver_id, ride_id, T0),
        )
        matched = [claims_a, claims_b].count(Claim.OK)
        unmatched = [expiry_a, expiry_b].count(True)
        assert matched + unmatched == 1, (claims_a, claims_b, expiry_a, expiry_b)
        if matched:
            assert await status_of(replicas[0], ride_id) == "assigned"
            assert (await replicas[0].assignments())[ride_id] == driver_id
        else:
            assert await status_of(replicas[0], ride_id) == "unmatched"
            assert driver_id in await replicas[0].available_drivers()


async def test_ride_closed_while_matching_first_hears_of_it(
    make_sql_store: Callable[[], Any],
) -> None:
    """ride.requested and ride.cancelled of one ride reach two replicas at once (each
    possibly twice): neither handler fails, and the ride never waits afterwards."""
    replicas = [await store_of(make_sql_store) for _ in range(4)]
    for i in range(20):
        ride_id = f"r{i}"
        await asyncio.gather(
            replicas[0].add_ride(ride_id, HERE, T0),
            replicas[1].close_ride(ride_id, T0),
            replicas[2].add_ride(ride_id, HERE, T0),
            replicas[3].close_ride(ride_id, T0),
        )
        assert await status_of(replicas[0], ride_id) == "closed"
    assert await replicas[0].waiting() == []


async def test_closing_an_expiring_ride_keeps_the_expiry(
    make_sql_store: Callable[[], Any],
) -> None:
    """The rider cancels as the sweep expires the ride: if the expiry won (ride.unmatched
    went out), the ride stays unmatched; otherwise it is closed and never expires."""
    replicas = [await store_of(make_sql_store) for _ in range(4)]
    for i in range(20):
        ride_id = f"r{i}"
        await replicas[0].add_ride(ride_id, HERE, T0)
        closes = [replicas[k].close_ride(ride_id, T0) for k in (1, 3)]
        expiries = [replicas[k].expire(ride_id, T0) for k in (0, 2)]
        _, expired_a, _, expired_b = await asyncio.gather(
            closes[0], expiries[0], closes[1], expiries[1]
        )
        expected = "unmatched" if True in (expired_a, expired_b) else "closed"
        assert await status_of(replicas[0], ride_id) == expected, f"ride {i}"


async def test_going_off_duty_on_a_ride_is_told_in_the_same_change(
    make_store: Callable[[], Any],
) -> None:
    """A driver going offline while on a ride: the hook runs (inside the transaction, for
    the outbox) with the ride; offline while free, or online on a ride, it does not."""
    store = await store_of(make_store)
    left: list[str] = []

    async def on_leave(_: Any, ride_id: str) -> None:
        left.append(ride_id)

    await store.set_driver("d1", online=True, position=HERE, now=T0)
    await store.set_driver("d2", online=True, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)
    assert await store.claim("d1", "r1", T0) is Claim.OK
    assert await store.set_driver("d1", online=True, position=HERE, now=T0, on_leave=on_leave)
    free = await store.set_driver("d2", online=False, position=None, now=T0, on_leave=on_leave)
    assert free is None
    assert left == []
    ride = await store.set_driver("d1", online=False, position=None, now=T0, on_leave=on_leave)
    assert (ride, left) == ("r1", ["r1"])


async def test_a_driver_lost_mid_ride_is_freed_off_duty(make_store: Callable[[], Any]) -> None:
    """close_ride(off_duty=True): the ride is closed and its driver free but offline, so
    never proposed again until they say they are available."""
    store = await store_of(make_store)
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    await store.add_ride("r1", HERE, T0)
    assert await store.claim("d1", "r1", T0) is Claim.OK
    assert await store.close_ride("r1", T0, off_duty=True) == "d1"
    assert await store.assignments() == {}
    assert await store.available_drivers() == {}
    assert await store.free_driver("d1") is None, "free but offline"
    await store.set_driver("d1", online=True, position=HERE, now=T0)
    assert await store.available_drivers() == {"d1": HERE}
