"""Matching decisions: nearest driver, waiting rides, timeouts, replicas with stale views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.geo import Position
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from matching.domain import Duty, Match, Matcher, MatchingRules
from matching.store import MemoryMatchStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
PICKUP = Position(lat=52.52, lng=13.405)
NEAR = Position(lat=52.521, lng=13.405)  # ~110 m
FAR = Position(lat=52.55, lng=13.405)  # ~3.3 km
VERY_FAR = Position(lat=53.5, lng=13.405)  # ~109 km
RULES = MatchingRules(max_pickup_km=15, wait_timeout=timedelta(seconds=60))


def matcher(store: MemoryMatchStore | None = None) -> Matcher:
    return Matcher(store or MemoryMatchStore(), rules=RULES)


async def test_nearest_available_driver_is_assigned() -> None:
    """Of a far, a near and an offline-but-nearest driver, the near one gets the ride."""
    m = matcher()
    await m.driver_availability("far", available=True, position=FAR, now=T0)
    await m.driver_availability("near", available=True, position=NEAR, now=T0)
    await m.driver_availability("off", available=True, position=PICKUP, now=T0)
    await m.driver_availability("off", available=False, position=None, now=T0)
    match = await m.ride_requested("r1", PICKUP, T0)
    assert match == Match("r1", "near", 0.111)
    assert "near" not in m.index


async def test_no_driver_then_one_appears() -> None:
    """A ride with nobody free waits, and the next driver to come online takes it."""
    m = matcher()
    assert await m.ride_requested("r1", PICKUP, T0) is None
    far_away = await m.driver_availability("vf", available=True, position=VERY_FAR, now=T0)
    assert far_away == Duty(None)
    match = (await m.driver_availability("d1", available=True, position=FAR, now=T0)).match
    assert match is not None
    assert (match.ride_id, match.driver_id) == ("r1", "d1")


async def test_a_released_ride_goes_to_the_next_nearest_driver_at_once() -> None:
    """The driver who never set off is off duty and not proposed again; the ride is matched
    with the next nearest free driver in the same step (or waits when there is none)."""
    m = matcher()
    await m.driver_availability("near", available=True, position=NEAR, now=T0)
    await m.driver_availability("far", available=True, position=FAR, now=T0)
    first = await m.ride_requested("r1", PICKUP, T0)
    assert first is not None
    assert first.driver_id == "near"
    later = T0 + timedelta(seconds=60)
    second = await m.match_expired("r1", "near", later)
    assert second is not None
    assert (second.ride_id, second.driver_id) == ("r1", "far")
    assert "near" not in m.index
    assert await m.store.available_drivers() == {}
    assert await m.match_expired("r1", "near", later) is None  # a redelivery
    third = await m.match_expired("r1", "far", later)
    assert third is None  # nobody left: it waits
    assert [w.id for w in await m.store.waiting()] == ["r1"]


async def test_waiting_rides_are_served_oldest_first() -> None:
    """The driver who frees up takes the ride that waited longest."""
    m = matcher()
    await m.ride_requested("young", PICKUP, T0 + timedelta(seconds=5))
    await m.ride_requested("old", FAR, T0)
    duty = await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    assert duty.match is not None
    assert duty.ride_id == duty.match.ride_id == "old"


async def test_sweeps_look_for_idle_drivers_once_per_tenth_of_the_timeout() -> None:
    """A sweep takes drivers silent for the idle timeout offline, but looks only every
    tenth of that timeout (a write transaction; sweeps run twice a second): a driver
    who vanished goes offline at most that much after the timeout."""
    rules = MatchingRules(driver_idle_timeout=timedelta(seconds=100))
    m = Matcher(MemoryMatchStore(), rules=rules)
    await m.driver_availability("quiet", available=True, position=PICKUP, now=T0)
    await m.sweep(T0 + timedelta(seconds=95))  # looks: not idle yet
    await m.sweep(T0 + timedelta(seconds=101))  # idle, but the last look was 6 s ago
    assert await m.store.available_drivers() == {"quiet": PICKUP}
    await m.sweep(T0 + timedelta(seconds=105))  # a tenth of the timeout since: looks
    assert await m.store.available_drivers() == {}


async def test_waiting_ride_times_out_exactly_once() -> None:
    """After the timeout a sweep marks the ride unmatched (the hook fires once) and no
    driver is assigned to it later."""
    unmatched: list[str] = []

    async def on_unmatched(ride_id: str, _: Any) -> None:
        unmatched.append(ride_id)

    store = MemoryMatchStore()
    a = Matcher(store, rules=RULES, on_unmatched=on_unmatched)
    b = Matcher(store, rules=RULES, on_unmatched=on_unmatched)
    await a.ride_requested("r1", PICKUP, T0)
    assert await a.sweep(T0 + timedelta(seconds=59)) == ([], [])
    later = T0 + timedelta(seconds=61)
    assert (await a.sweep(later))[1] == ["r1"]
    assert (await b.sweep(later))[1] == []
    assert unmatched == ["r1"]
    assert await b.driver_availability("d1", available=True, position=PICKUP, now=later) == Duty(
        None
    )


async def test_completed_ride_frees_the_driver_for_a_waiting_ride() -> None:
    """When a ride ends, its driver (at the dropoff) takes the next waiting ride."""
    m = matcher()
    await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    assert await m.ride_requested("r1", PICKUP, T0) is not None
    assert await m.ride_requested("r2", FAR, T0) is None
    match = await m.ride_closed("r2-unrelated", T0)
    assert match is None
    match = await m.ride_closed("r1", T0, driver_position=FAR)
    assert match == Match("r2", "d1", 0.0)


async def test_driver_going_offline_during_a_ride_is_not_reused() -> None:
    """A driver who went off duty mid-ride is not matched when that ride ends."""
    m = matcher()
    await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    await m.ride_requested("r1", PICKUP, T0)
    off = await m.driver_availability("d1", available=False, position=None, now=T0)
    assert off == Duty("r1")  # told which ride they are still on
    await m.ride_requested("r2", PICKUP, T0)
    assert await m.ride_closed("r1", T0) is None
    assert [w.id for w in await m.store.waiting()] == ["r2"]


async def test_a_stale_replica_skips_the_taken_driver_and_tries_the_next() -> None:
    """Replica B still believes d-near is free; its claim fails, so it assigns d-far."""
    store = MemoryMatchStore()
    a, b = matcher(store), matcher(store)
    for replica in (a, b):
        await replica.driver_availability("d-near", available=True, position=NEAR, now=T0)
        await replica.driver_availability("d-far", available=True, position=FAR, now=T0)
    first = await a.ride_requested("r1", PICKUP, T0)
    assert first is not None
    assert first.driver_id == "d-near"
    assert "d-near" in b.index
    second = await b.ride_requested("r2", PICKUP, T0)
    assert second is not None
    assert second.driver_id == "d-far"
    assert "d-near" not in b.index


async def test_redelivered_request_is_ignored() -> None:
    """The same ride.requested twice assigns one driver once."""
    m = matcher()
    await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    await m.driver_availability("d2", available=True, position=PICKUP, now=T0)
    assert await m.ride_requested("r1", PICKUP, T0) is not None
    assert await m.ride_requested("r1", PICKUP, T0) is None
    assert await m.store.assignments() == {"r1": "d1"}


async def test_cancelled_before_matching_heard_of_it_is_never_matched() -> None:
    """ride.cancelled overtaking ride.requested leaves a tombstone: no assignment."""
    m = matcher()
    await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    await m.ride_closed("r1", T0)
    assert await m.ride_requested("r1", PICKUP, T0) is None
    assert await m.store.assignments() == {}


positions = st.builds(
    Position,
    lat=st.floats(min_value=52.45, max_value=52.6),
    lng=st.floats(min_value=13.3, max_value=13.5),
)


class ReplicasMachine(RuleBasedStateMachine):
    """Three replicas with their own indexes over one store, driven in any order."""

    def __init__(self) -> None:
        super().__init__()
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.store = MemoryMatchStore()
        self.replicas = [matcher(self.store) for _ in range(3)]
        self.now = T0
        self.rides = 0
        self.matched: dict[str, str] = {}  # ride -> driver, from the matches returned

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()

    def record(self, match: Match | None) -> None:
        if match is not None:
            assert match.ride_id not in self.matched
            self.matched[match.ride_id] = match.driver_id

    @rule(replica=st.integers(0, 2), pickup=positions)
    def request(self, replica: int, pickup: Position) -> None:
        self.rides += 1
        self.record(
            self.run(self.replicas[replica].ride_requested(f"r{self.rides}", pickup, self.now))
        )

    @rule(replica=st.integers(0, 2), driver=st.integers(0, 5), on=st.booleans(), where=positions)
    def availability(self, replica: int, driver: int, on: bool, where: Position) -> None:
        m = self.replicas[replica]
        duty = self.run(
            m.driver_availability(f"d{driver}", available=on, position=where, now=self.now)
        )
        self.record(duty.match)

    @rule(replica=st.integers(0, 2), data=st.data())
    def close(self, replica: int, data: st.DataObject) -> None:
        if self.rides:
            ride = f"r{data.draw(st.integers(1, self.rides))}"
            self.record(self.run(self.replicas[replica].ride_closed(ride, self.now)))
            self.matched.pop(ride, None)

    @rule(replica=st.integers(0, 2), seconds=st.integers(0, 90))
    def sweep(self, replica: int, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        matches, _ = self.run(self.replicas[replica].sweep(self.now))
        for match in matches:
            self.record(match)

    @invariant()
    def one_driver_one_ride(self) -> None:
        assignments = self.run(self.store.assignments())
        assert len(set(assignments.values())) == len(assignments)
        assert assignments == self.matched


ReplicasMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_replicas_keep_one_driver_one_ride = ReplicasMachine.TestCase
test_replicas_keep_one_driver_one_ride.__doc__ = (
    "Any interleaving of requests, availability, closes and sweeps on 3 replicas keeps every "
    "driver on at most one ride, and every match reported is the store's."
)


async def test_a_driver_going_off_duty_on_a_ride_is_reported_for_rides() -> None:
    """Off duty while matched: on_off_duty names the ride, the driver and when (rides
    hands the ride to another driver); the answer still names the ride."""
    told: list[tuple[str, str, datetime]] = []

    async def on_off_duty(ride_id: str, driver_id: str, at: datetime, _: Any) -> None:
        told.append((ride_id, driver_id, at))

    m = Matcher(MemoryMatchStore(), rules=RULES, on_off_duty=on_off_duty)
    await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    await m.ride_requested("r1", PICKUP, T0)
    later = T0 + timedelta(seconds=5)
    assert await m.driver_availability("d1", available=False, position=None, now=later) == Duty(
        "r1"
    )
    assert told == [("r1", "d1", later)]


async def test_a_driver_lost_mid_ride_is_not_matched_again() -> None:
    """ride.cancelled for a driver who vanished mid-ride: their ride is closed and they
    are off duty, so the waiting ride is not given to them."""
    m = matcher()
    await m.driver_availability("d1", available=True, position=PICKUP, now=T0)
    await m.ride_requested("r1", PICKUP, T0)
    await m.ride_requested("r2", PICKUP, T0)
    assert await m.ride_closed("r1", T0, driver_lost=True) is None
    assert await m.store.available_drivers() == {}
    assert [w.id for w in await m.store.waiting()] == ["r2"]
