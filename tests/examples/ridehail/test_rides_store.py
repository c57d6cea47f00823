"""rides' optimistic concurrency on real databases: a ride's lifecycle steps are
"load, decide, UPDATE ... WHERE version = the one read", so of several replicas changing
one ride at once exactly one wins and the others are told it changed under them (409),
on SQLite (writers serialized) and on PostgreSQL (the losing UPDATE waits for the winner,
then re-checks the version it committed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from contracts.geo import Position
from rides import store
from rides.domain import SYSTEM, Action, Actor, IllegalTransition, RideStatus, Role, apply, new_ride
from store_replicas import replica_databases

from corral.sdk import Database

pytestmark = pytest.mark.asyncio
NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RIDER = Actor("rider-1", Role.RIDER)


@pytest.fixture(params=["sqlite", "postgres"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Database]]:
    """Four replicas' databases over one rides database, each with its own pool."""
    async with replica_databases(
        request.param, tmp_path, store.metadata, name="rides"
    ) as databases:
        yield databases


async def act(db: Database, ride_id: str, action: Action, who: Actor, **kwargs: Any) -> bool:
    """What rides' ``_act`` does in one request or event: True when this change won."""
    async with db.transaction() as session:
        found = await store.load(session, ride_id)
        assert found is not None
        try:
            transition = apply(found[0], action, actor=who, now=NOW, **kwargs)
        except IllegalTransition:
            return False  # another replica's change committed before we read
        return await store.save(session, found[0], transition.ride)


async def test_concurrent_changes_of_a_ride_never_lose_one(replicas: list[Database]) -> None:
    """The rider cancels while matching's verdicts (two matches, an expiry) arrive at other
    replicas: at most one verdict wins (they all start from ``requested``), a cancel may
    follow a match, and every change that won is in the row (none overwrote another)."""
    pickup, dropoff = Position(lat=52.5, lng=13.4), Position(lat=52.6, lng=13.5)
    for round_ in range(10):
        ride = new_ride(rider=RIDER, pickup=pickup, dropoff=dropoff, now=NOW)
        async with replicas[0].transaction() as session:
            await store.add(session, ride)
        match_1, cancel, match_2, unmatch = await asyncio.gather(
            act(replicas[0], ride.id, Action.MATCH, SYSTEM, driver_id="d1"),
            act(replicas[1], ride.id, Action.CANCEL, RIDER),
            act(replicas[2], ride.id, Action.MATCH, SYSTEM, driver_id="d2"),
            act(replicas[3], ride.id, Action.UNMATCH, SYSTEM),
        )
        verdicts = [match_1, match_2, unmatch]
        assert verdicts.count(True) <= 1, f"round {round_}: {verdicts}"
        async with replicas[1].sessionmaker() as session:
            found = await store.load(session, ride.id)
        assert found is not None
        after = found[0]
        assert after.version == verdicts.count(True) + cancel, f"round {round_}"
        if cancel:
            assert after.status is RideStatus.CANCELLED
        else:
            assert after.status is (RideStatus.UNMATCHED if unmatch else RideStatus.MATCHED)
        if match_1 or match_2:
            assert after.driver_id == ("d1" if match_1 else "d2")
