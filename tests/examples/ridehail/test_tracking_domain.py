"""Bounded position history, ride binding and live fan-out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from contracts.geo import Position
from tracking.domain import Follower, Hub, Tracks

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(i: int) -> Position:
    return Position(lat=52.5 + i * 0.001, lng=13.4)


def test_history_is_bounded_per_driver() -> None:
    """Only the last `keep` positions are kept."""
    tracks = Tracks(keep=3)
    for i in range(10):
        tracks.record("d1", at(i), T0 + timedelta(seconds=i))
    assert [f.position for f in tracks.recent_for_driver("d1")] == [at(7), at(8), at(9)]


def test_positions_belong_to_the_ride_only_while_bound() -> None:
    """A driver's positions join the ride's track between ride.matched and its end, and the
    driven distance is summed along the track."""
    tracks = Tracks()
    tracks.record("d1", at(0), T0)
    tracks.bind("r1", "d1")
    for i in range(1, 4):
        assert tracks.record("d1", at(i), T0).ride_id == "r1"
    tracks.unbind("r1", "completed")
    assert tracks.record("d1", at(9), T0).ride_id is None
    assert [f.position for f in tracks.recent_for_ride("r1")] == [at(1), at(2), at(3)]
    assert tracks.distance_km("r1") == pytest.approx(0.2224, abs=0.001)
    assert tracks.ended["r1"] == "completed"
    assert tracks.distance_km("unknown") is None


def test_a_released_match_stops_counting_the_old_driver() -> None:
    """A ride released from a driver who never set off, then matched with another: only the
    new driver's positions are the ride's; the ride did not end."""
    tracks = Tracks()
    tracks.bind("r1", "d1")
    tracks.release("r1")
    assert tracks.record("d1", at(1), T0).ride_id is None
    assert "r1" not in tracks.ended
    tracks.bind("r1", "d2")
    assert tracks.record("d2", at(2), T0).ride_id == "r1"
    # matched again without a release in between (events reordered): the old binding goes
    tracks.bind("r2", "d3")
    tracks.bind("r2", "d4")
    assert tracks.record("d3", at(3), T0).ride_id is None
    assert tracks.driver_of("r2") == "d4"


def test_ended_rides_are_bounded() -> None:
    """Old ended rides and their tracks are forgotten beyond keep_rides."""
    tracks = Tracks(keep_rides=2)
    for r in range(3):
        tracks.bind(f"r{r}", "d1")
        tracks.record("d1", at(r), T0)
        tracks.unbind(f"r{r}", "completed")
    assert list(tracks.ended) == ["r1", "r2"]
    assert tracks.recent_for_ride("r0") == []


async def test_fan_out_reaches_every_follower_and_close_ends_streams() -> None:
    """Two followers get each update; closing sends the final status and ends both."""
    hub = Hub()
    a, b = hub.follow("r1"), hub.follow("r1")
    other = hub.follow("r2")
    assert hub.publish("r1", {"n": 1}) == 2
    hub.close("r1", {"type": "status", "status": "completed"})

    async def drain(follower: Follower) -> list[object]:
        return [u async for u in follower]

    got = await asyncio.wait_for(asyncio.gather(drain(a), drain(b)), 1)
    assert got == [[{"n": 1}, {"type": "status", "status": "completed"}]] * 2
    assert hub.followers("r1") == 0
    assert other.queue.empty()


async def test_slow_follower_keeps_the_newest_updates() -> None:
    """A full queue drops the oldest update, counts it, and never blocks the publisher."""
    hub = Hub(queue_size=3)
    follower = hub.follow("r1")
    for n in range(5):
        hub.publish("r1", {"n": n})
    assert follower.dropped == 2
    assert [follower.queue.get_nowait() for _ in range(3)] == [{"n": 2}, {"n": 3}, {"n": 4}]
    hub.leave(follower)
    assert hub.followers("r1") == 0


def test_only_the_rides_rider_its_driver_and_admins_may_see_it() -> None:
    """Ownership: the rider from ride.requested, the driver while bound to the ride (rides
    asks the distance on their behalf), admins; a stranger of either role sees nothing,
    and the driver no longer once the ride ended."""
    tracks = Tracks()
    tracks.requested("r1", "rider-1")
    tracks.bind("r1", "d1")
    allowed = {
        ("rider-1", "rider"): True,
        ("rider-2", "rider"): False,
        ("d1", "driver"): True,
        ("d2", "driver"): False,
        ("rider-1", "driver"): False,  # the same id under another role is someone else
        ("anyone", "admin"): True,
    }
    for (caller, role), expected in allowed.items():
        assert tracks.may_see("r1", caller_id=caller, role=role) is expected, (caller, role)
    assert not tracks.may_see("unknown", caller_id="rider-1", role="rider")
    tracks.unbind("r1", "completed")
    assert not tracks.may_see("r1", caller_id="d1", role="driver")
    assert tracks.may_see("r1", caller_id="rider-1", role="rider")


def test_owners_of_old_rides_are_forgotten_with_them() -> None:
    """Who owns a ride is kept as long as the ride's end is (bounded memory)."""
    tracks = Tracks(keep_rides=2)
    for i in range(4):
        tracks.requested(f"r{i}", f"rider-{i}")
        tracks.unbind(f"r{i}", "completed")
    assert not tracks.may_see("r0", caller_id="rider-0", role="rider")
    assert tracks.may_see("r3", caller_id="rider-3", role="rider")
