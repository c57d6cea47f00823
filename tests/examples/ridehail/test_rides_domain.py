"""The rides state machine and who may move a ride."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from contracts.geo import Position
from hypothesis import given
from hypothesis import strategies as st
from rides.domain import (
    FINAL,
    SYSTEM,
    TRANSITIONS,
    Action,
    Actor,
    IllegalTransition,
    NotAllowed,
    Ride,
    RideNotFound,
    RideStatus,
    Role,
    apply,
    can_see,
    deadlines,
    new_ride,
)

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RIDER = Actor("r1", Role.RIDER)
OTHER_RIDER = Actor("r2", Role.RIDER)
DRIVER = Actor("d1", Role.DRIVER)
OTHER_DRIVER = Actor("d2", Role.DRIVER)
ADMIN = Actor("a1", Role.ADMIN)
PICKUP = Position(lat=52.52, lng=13.405)
DROPOFF = Position(lat=52.50, lng=13.45)
# The timeouts' cutoff for RELEASE, DECLINE and ABANDON: later than every step ride_in makes.
CUTOFF = T0 + timedelta(hours=1)

ACTOR_OF = {
    Action.MATCH: SYSTEM,
    Action.UNMATCH: SYSTEM,
    Action.ARRIVE: DRIVER,
    Action.START: DRIVER,
    Action.COMPLETE: DRIVER,
    Action.CANCEL: RIDER,
    Action.RELEASE: SYSTEM,
    Action.DECLINE: SYSTEM,
    Action.ABANDON: SYSTEM,
}


def ride_in(status: RideStatus) -> Ride:
    """A ride brought to ``status`` through legal steps only."""
    path = {
        RideStatus.REQUESTED: [],
        RideStatus.MATCHED: [Action.MATCH],
        RideStatus.DRIVER_ARRIVING: [Action.MATCH, Action.ARRIVE],
        RideStatus.IN_PROGRESS: [Action.MATCH, Action.ARRIVE, Action.START],
        RideStatus.COMPLETED: [Action.MATCH, Action.ARRIVE, Action.START, Action.COMPLETE],
        RideStatus.CANCELLED: [Action.CANCEL],
        RideStatus.UNMATCHED: [Action.UNMATCH],
    }[status]
    ride = new_ride(rider=RIDER, pickup=PICKUP, dropoff=DROPOFF, now=T0, ride_id="ride-1")
    for i, action in enumerate(path):
        ride = apply(
            ride, action, actor=ACTOR_OF[action], now=T0 + timedelta(minutes=i + 1), driver_id="d1"
        ).ride
    assert ride.status is status
    return ride


def test_happy_path_records_times_distance_and_topics() -> None:
    """requested -> matched -> driver_arriving -> in_progress -> completed, with events."""
    ride = new_ride(rider=RIDER, pickup=PICKUP, dropoff=DROPOFF, now=T0)
    topics = []
    steps = [
        (Action.MATCH, SYSTEM, RideStatus.MATCHED),
        (Action.ARRIVE, DRIVER, RideStatus.DRIVER_ARRIVING),
        (Action.START, DRIVER, RideStatus.IN_PROGRESS),
        (Action.COMPLETE, DRIVER, RideStatus.COMPLETED),
    ]
    for minute, (action, actor, expected) in enumerate(steps, start=1):
        result = apply(
            ride, action, actor=actor, now=T0 + timedelta(minutes=minute * 5), driver_id="d1"
        )
        ride = result.ride
        topics.append(result.topic)
        assert ride.status is expected
    assert topics == [None, "ride.driver-arriving", "ride.started", "ride.completed"]
    assert ride.driver_id == "d1"
    assert ride.duration_s == 300.0
    assert ride.distance_km == pytest.approx(3.78, abs=0.01)
    assert ride.version == 4


@pytest.mark.parametrize(
    ("status", "action", "allowed"),
    [
        (status, action, (status, action) in TRANSITIONS)
        for status in RideStatus
        for action in Action
    ],
)
def test_every_state_action_pair_is_legal_exactly_when_the_table_says(
    status: RideStatus, action: Action, allowed: bool
) -> None:
    """Each of the 42 (state, action) pairs either moves as TRANSITIONS says or is a 409
    (404 for driver steps on a ride no driver was ever assigned to: it is not theirs)."""
    ride = ride_in(status)
    if allowed:
        moved = apply(
            ride, action, actor=ACTOR_OF[action], now=T0, driver_id="d1", stale_before=CUTOFF
        )
        assert moved.ride.status is TRANSITIONS[(status, action)]
    elif ride.driver_id is None and ACTOR_OF[action] == DRIVER:
        with pytest.raises(RideNotFound):
            apply(ride, action, actor=DRIVER, now=T0)
    else:
        with pytest.raises(IllegalTransition) as info:
            apply(ride, action, actor=ACTOR_OF[action], now=T0, driver_id="d1", stale_before=CUTOFF)
        assert info.value.status is status


def test_final_states_allow_nothing_and_say_so() -> None:
    """A completed ride's 409 says the ride is over; a matched one lists what is allowed."""
    with pytest.raises(IllegalTransition, match="the ride is over"):
        apply(ride_in(RideStatus.COMPLETED), Action.CANCEL, actor=RIDER, now=T0)
    with pytest.raises(IllegalTransition, match="allowed now: arrive, cancel"):
        apply(ride_in(RideStatus.MATCHED), Action.START, actor=DRIVER, now=T0)


@pytest.mark.parametrize(
    ("status", "action", "actor", "error"),
    [
        (RideStatus.IN_PROGRESS, Action.COMPLETE, RIDER, NotAllowed),  # rider completing
        (RideStatus.MATCHED, Action.ARRIVE, RIDER, NotAllowed),
        (RideStatus.MATCHED, Action.ARRIVE, OTHER_DRIVER, RideNotFound),  # not their ride
        (RideStatus.MATCHED, Action.CANCEL, DRIVER, NotAllowed),  # drivers do not cancel
        (RideStatus.REQUESTED, Action.CANCEL, OTHER_RIDER, RideNotFound),  # someone else's
        (RideStatus.REQUESTED, Action.MATCH, ADMIN, NotAllowed),  # only matching matches
        (RideStatus.REQUESTED, Action.MATCH, RIDER, NotAllowed),
        (RideStatus.IN_PROGRESS, Action.COMPLETE, ADMIN, NotAllowed),
        (RideStatus.MATCHED, Action.RELEASE, ADMIN, NotAllowed),  # only the accept timeout
        (RideStatus.MATCHED, Action.RELEASE, DRIVER, NotAllowed),
        (RideStatus.MATCHED, Action.DECLINE, DRIVER, NotAllowed),  # matching's word
        (RideStatus.IN_PROGRESS, Action.ABANDON, ADMIN, NotAllowed),  # only the timeout
        (RideStatus.IN_PROGRESS, Action.ABANDON, RIDER, NotAllowed),
    ],
)
def test_role_violations_are_refused_before_the_state_is_looked_at(
    status: RideStatus, action: Action, actor: Actor, error: type[Exception]
) -> None:
    """403 for a participant doing what their role may not, 404 for a stranger."""
    with pytest.raises(error):
        apply(ride_in(status), action, actor=actor, now=T0, driver_id="d1")


def test_release_puts_a_matched_ride_back_to_waiting_without_its_driver() -> None:
    """The accept timeout's release: requested again, no driver, no match time; the old
    driver no longer sees it nor may arrive; a new match works as the first did."""
    released = apply(
        ride_in(RideStatus.MATCHED), Action.RELEASE, actor=SYSTEM, now=T0, stale_before=CUTOFF
    )
    ride = released.ride
    assert released.topic == "ride.match-expired"
    assert (ride.status, ride.driver_id, ride.matched_at) == (RideStatus.REQUESTED, None, None)
    assert not can_see(ride, DRIVER)
    with pytest.raises(RideNotFound):
        apply(ride, Action.ARRIVE, actor=DRIVER, now=T0)
    again = apply(ride, Action.MATCH, actor=SYSTEM, now=T0, driver_id="d2").ride
    assert (again.status, again.driver_id) == (RideStatus.MATCHED, "d2")


def test_release_keeps_a_match_made_after_the_cutoff() -> None:
    """A ride released and matched again after the sweep listed it keeps its new driver:
    the sweep's release names the cutoff, and only an older match is released."""
    ride = ride_in(RideStatus.MATCHED)  # matched at T0 + 1 min
    assert ride.matched_at is not None
    with pytest.raises(IllegalTransition):
        apply(ride, Action.RELEASE, actor=SYSTEM, now=CUTOFF, stale_before=ride.matched_at)
    with pytest.raises(ValueError, match="cutoff"):
        apply(ride, Action.RELEASE, actor=SYSTEM, now=CUTOFF)


def test_a_driver_who_never_picks_the_rider_up_is_replaced() -> None:
    """On the way but no pickup by the pickup timeout: released like a match (requested,
    no driver, the old one may no longer start it); one who picked up meanwhile stays."""
    arriving = ride_in(RideStatus.DRIVER_ARRIVING)  # on the way since T0 + 2 min
    released = apply(arriving, Action.RELEASE, actor=SYSTEM, now=CUTOFF, stale_before=CUTOFF)
    assert released.topic == "ride.match-expired"
    assert (released.ride.status, released.ride.driver_id) == (RideStatus.REQUESTED, None)
    with pytest.raises(RideNotFound):
        apply(released.ride, Action.START, actor=DRIVER, now=CUTOFF)
    started = apply(arriving, Action.START, actor=DRIVER, now=CUTOFF).ride
    with pytest.raises(IllegalTransition):
        apply(started, Action.RELEASE, actor=SYSTEM, now=CUTOFF, stale_before=CUTOFF)


def test_a_matched_driver_going_off_duty_declines_only_their_own_match() -> None:
    """decline: the matched driver went off duty, so the ride waits for another now; a
    ride matched to someone else since, or already on its way, is left alone."""
    matched = ride_in(RideStatus.MATCHED)
    declined = apply(
        matched, Action.DECLINE, actor=SYSTEM, now=CUTOFF, driver_id="d1", stale_before=CUTOFF
    )
    assert declined.topic == "ride.match-expired"
    assert (declined.ride.status, declined.ride.driver_id) == (RideStatus.REQUESTED, None)
    rematched = apply(declined.ride, Action.MATCH, actor=SYSTEM, now=CUTOFF, driver_id="d2")
    later = CUTOFF + timedelta(seconds=1)
    with pytest.raises(IllegalTransition):  # d1's off duty, heard after d2 got the ride
        apply(
            rematched.ride,
            Action.DECLINE,
            actor=SYSTEM,
            now=later,
            driver_id="d1",
            stale_before=later,
        )
    with pytest.raises(IllegalTransition):  # on the way: they finish it first
        apply(
            ride_in(RideStatus.DRIVER_ARRIVING),
            Action.DECLINE,
            actor=SYSTEM,
            now=later,
            driver_id="d1",
            stale_before=later,
        )
    with pytest.raises(ValueError, match="driver"):
        apply(matched, Action.DECLINE, actor=SYSTEM, now=CUTOFF, stale_before=CUTOFF)


def test_a_ride_whose_driver_vanished_mid_ride_is_cancelled_with_the_reason() -> None:
    """abandon: in progress past the longest ride; nobody can take over a ride with the
    rider in the car, so it ends cancelled (never completed: nothing is charged), with
    the reason; a ride started after the cutoff is left to its driver."""
    driving = ride_in(RideStatus.IN_PROGRESS)
    ended = apply(
        driving,
        Action.ABANDON,
        actor=SYSTEM,
        now=CUTOFF,
        stale_before=CUTOFF,
        reason="the driver lost contact: not completed within 14400s",
    )
    assert ended.topic == "ride.cancelled"
    assert ended.ride.status is RideStatus.CANCELLED
    assert ended.ride.completed_at is None
    assert ended.ride.ended_reason == "the driver lost contact: not completed within 14400s"
    assert ended.ride.driver_id == "d1"  # who it was, for support
    assert driving.started_at is not None
    with pytest.raises(IllegalTransition):
        apply(driving, Action.ABANDON, actor=SYSTEM, now=CUTOFF, stale_before=driving.started_at)


def test_the_deadlines_cover_every_state_a_driver_holds_a_ride_in() -> None:
    """matched, driver_arriving and in_progress each have a timeout and what it does:
    no state with a driver can be left forever by one who vanished."""
    rules = deadlines(
        accept=timedelta(seconds=60), pickup=timedelta(minutes=15), ride=timedelta(hours=4)
    )
    held = {status for status in RideStatus if status not in FINAL} - {RideStatus.REQUESTED}
    assert {d.status for d in rules} == held
    for rule in rules:
        assert TRANSITIONS[(rule.status, rule.action)] in (
            RideStatus.REQUESTED,
            RideStatus.CANCELLED,
        )
    assert [d.reason for d in rules] == [
        "the driver did not set off within 60s",
        "the driver did not pick the rider up within 900s",
        "the driver lost contact: not completed within 14400s",
    ]


def test_admin_may_cancel_any_open_ride() -> None:
    """An admin cancels a rider's ride, and the reason says who did."""
    ride = apply(ride_in(RideStatus.MATCHED), Action.CANCEL, actor=ADMIN, now=T0).ride
    assert ride.status is RideStatus.CANCELLED
    assert ride.ended_reason == "cancelled by admin"


@pytest.mark.parametrize(
    ("actor", "sees_requested", "sees_matched"),
    [
        (RIDER, True, True),
        (OTHER_RIDER, False, False),
        (DRIVER, False, True),
        (OTHER_DRIVER, False, False),
        (ADMIN, True, True),
    ],
)
def test_visibility(actor: Actor, sees_requested: bool, sees_matched: bool) -> None:
    """Riders see their own rides, drivers only rides assigned to them, admins all."""
    assert can_see(ride_in(RideStatus.REQUESTED), actor) is sees_requested
    assert can_see(ride_in(RideStatus.MATCHED), actor) is sees_matched


def test_only_riders_request_rides() -> None:
    """A driver cannot request a ride."""
    with pytest.raises(NotAllowed):
        new_ride(rider=DRIVER, pickup=PICKUP, dropoff=DROPOFF, now=T0)


def test_match_needs_a_driver() -> None:
    """MATCH without a driver id is a programming error, not a 409."""
    with pytest.raises(ValueError, match="driver"):
        apply(ride_in(RideStatus.REQUESTED), Action.MATCH, actor=SYSTEM, now=T0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Action)),
            st.sampled_from([RIDER, OTHER_RIDER, DRIVER, OTHER_DRIVER, ADMIN, SYSTEM]),
        ),
        max_size=12,
    )
)
def test_any_sequence_of_commands_keeps_the_machine_consistent(
    commands: list[tuple[Action, Actor]],
) -> None:
    """Whatever is attempted, by whoever: legal moves follow the table, final is final."""
    ride = new_ride(rider=RIDER, pickup=PICKUP, dropoff=DROPOFF, now=T0)
    for i, (action, actor) in enumerate(commands):
        before = ride
        try:
            ride = apply(
                ride,
                action,
                actor=actor,
                now=T0 + timedelta(seconds=i),
                driver_id="d1",
                stale_before=CUTOFF,
            ).ride
        except (IllegalTransition, NotAllowed, RideNotFound):
            assert ride is before
            continue
        assert before.status not in FINAL
        assert TRANSITIONS[(before.status, action)] is ride.status
        assert ride.version == before.version + 1
        if ride.status in (RideStatus.DRIVER_ARRIVING, RideStatus.IN_PROGRESS):
            assert ride.driver_id == "d1"
        if action in (Action.ARRIVE, Action.START, Action.COMPLETE):
            assert actor == DRIVER
        if action is Action.CANCEL:
            assert actor in (RIDER, ADMIN)
