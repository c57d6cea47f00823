"""The simulator's verdict (ridehail_cli.invariants.judge): what counts as paid, parked,
lost or double-charged, and the words it uses for each."""

from __future__ import annotations

from typing import Any

import pytest
from ridehail_cli.invariants import judge

T1, T2, T3 = "2026-05-01T08:01:00Z", "2026-05-01T08:02:00Z", "2026-05-01T08:03:00Z"


def ride(
    ride_id: str, status: str = "completed", driver: str | None = "d1", **times: Any
) -> dict[str, Any]:
    return {
        "id": ride_id,
        "status": status,
        "driver_id": driver,
        "matched_at": times.get("matched_at", T1 if driver else None),
        "completed_at": times.get("completed_at", T2 if status == "completed" else None),
    }


def letter(
    ride_id: str, topic: str = "ride.completed", service: str = "payments"
) -> dict[str, Any]:
    return {
        "seq": 7,
        "service": service,
        "topic": topic,
        "error": "ChargeFailed: the provider did not take the charge (provider 503)",
        "event": {"type": topic, "key": ride_id, "data": {"ride_id": ride_id}},
    }


def verdict_of(
    status: str | None, charges: int, letters: list[dict[str, Any]] | None = None
) -> tuple[list[str], list[str]]:
    payments = {} if status is None else {"r1": {"ride_id": "r1", "status": status}}
    charged = [{"reference": "r1"}] * charges
    v = judge({"r1": ride("r1")}, charged, payments, {}, letters)
    return v.failures, v.parked


def test_a_ride_paid_once_holds() -> None:
    """One charge and a captured payment: nothing to say."""
    assert verdict_of("captured", 1, []) == ([], [])


def test_a_refused_payment_waiting_in_the_dead_letters_is_parked_not_failed() -> None:
    """The provider down to the last delivery: payment failed, no charge, ride.completed
    in the dead letters: parked (the README's outage drill), and its letter explained."""
    assert verdict_of("failed", 0, [letter("r1")]) == ([], ["r1"])


@pytest.mark.parametrize(
    ("status", "charges", "letters", "words"),
    [
        ("failed", 0, [], "not in the dead letters: lost"),
        ("failed", 0, None, "not in the dead letters: lost"),  # letters unread
        ("retrying", 0, [], "not paid when the run ended (payment retrying; still being"),
        (None, 0, [], "not paid when the run ended (payment not opened"),
        ("captured", 0, [], "payment captured, but the provider has no charge"),
        ("failed", 1, [], "charged once, but its payment is failed"),
        ("captured", 2, [], "ride r1 charged 2 times"),
    ],
)
def test_what_went_wrong_is_said_as_it_happened(
    status: str | None, charges: int, letters: list[dict[str, Any]] | None, words: str
) -> None:
    """Each way a completed ride can be unpaid or overpaid fails, in its own words (never
    'charged 0 times' for a payment that is parked or still being retried)."""
    failures, parked = verdict_of(status, charges, letters)
    assert parked == []
    assert len(failures) == 1, failures
    assert words in failures[0]
    assert "charged 0 times" not in failures[0]


def test_other_dead_letters_are_unexplained() -> None:
    """A dead letter of another topic, or a payment's for a ride that was not parked."""
    letters = [letter("r1"), letter("r1", topic="ride.requested", service="matching")]
    failures, parked = verdict_of("failed", 0, letters)
    assert parked == ["r1"]
    assert failures == [
        "unexplained dead letter: {'seq': 7, 'service': 'matching', 'topic': "
        "'ride.requested', 'error': 'ChargeFailed: the provider did not take the charge "
        "(provider 503)'}"
    ]
    failures, _ = verdict_of("captured", 1, [letter("r2")])
    assert [f.split(":")[0] for f in failures] == ["unexplained dead letter"]


def test_stuck_rides_and_drivers_on_two_rides_fail() -> None:
    """A ride left in progress; one driver's two rides overlapping; matching holding one
    driver on two rides."""
    rides = {
        "a": ride("a", completed_at=T3),
        "b": ride("b", matched_at=T2),  # matched to d1 before a ended
        "c": ride("c", status="in_progress", driver="d2"),
    }
    charges = [{"reference": "a"}, {"reference": "b"}]
    payments = {r: {"status": "captured"} for r in ("a", "b")}
    v = judge(rides, charges, payments, {"x": "d3", "y": "d3"}, [])
    assert v.failures == [
        "1 rides stuck in a non-final state: ['c (in_progress)']",
        "driver d1 was on two rides at once",
        "matching holds a driver on two rides: {'x': 'd3', 'y': 'd3'}",
    ]
