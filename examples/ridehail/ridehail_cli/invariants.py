"""The simulator's verdict on what the system did, from what the admin API and the dead
letters say. Pure: the simulator fetches, :func:`judge` decides.

The invariants:

- every completed ride is paid exactly once: one charge in the provider's books and the
  payment ``captured``; or, when the provider refused it to the end, *parked*: the
  payment ``failed``, no charge, and its ``ride.completed`` in the dead letters, where
  ``corral events dlq replay`` pays it once the provider is back (nothing lost, and
  reported as such, not as a failure);
- no ride charged twice;
- no driver on two rides at once (as rides recorded them, and as matching holds them);
- no ride left in a non-final state;
- no dead letter (among those that arrived during the run) but the payment of a ride
  that is settled (parked, or paid once after a replay).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"completed", "cancelled", "unmatched"})
PAYMENT_TOPIC, PAYMENT_SERVICE = "ride.completed", "payments"


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)
    """Completed rides whose payment waits in the dead letters (the provider refused it)."""

    @property
    def holds(self) -> bool:
        return not self.failures


def letter_ride(letter: Mapping[str, Any]) -> str | None:
    """The ride a dead letter is about (its event's ordering key, or its ride_id)."""
    event = letter.get("event") or {}
    key = event.get("key") or (event.get("data") or {}).get("ride_id")
    return str(key) if key else None


def parked_rides(letters: Sequence[Mapping[str, Any]]) -> set[str]:
    """Rides whose ride.completed payments dead-lettered."""
    return {
        ride
        for letter in letters
        if letter.get("topic") == PAYMENT_TOPIC and letter.get("service") == PAYMENT_SERVICE
        if (ride := letter_ride(letter)) is not None
    }


def judge(
    rides: Mapping[str, Mapping[str, Any]],
    charges: Sequence[Mapping[str, Any]],
    payments: Mapping[str, Mapping[str, Any]],
    assignments: Mapping[str, str],
    letters: Sequence[Mapping[str, Any]] | None,
) -> Verdict:
    """``rides``: the run's rides by id (as ``GET /rides/{id}`` shows them); ``charges``:
    the provider's books; ``payments`` by ride id; ``assignments``: matching's ride ->
    driver; ``letters``: the dead letters that arrived during the run, whole (None when
    they could not be read)."""
    verdict = Verdict()
    stuck = [f"{r['id']} ({r['status']})" for r in rides.values() if r["status"] not in FINAL]
    if stuck:
        verdict.failures.append(f"{len(stuck)} rides stuck in a non-final state: {stuck[:5]}")
    per_ride = Counter(str(c["reference"]) for c in charges)
    in_letters = parked_rides(letters) if letters is not None else set()
    settled: set[str] = set()
    for ride in rides.values():
        if ride["status"] == "completed":
            problem = _payment_problem(ride["id"], per_ride[ride["id"]], payments, in_letters)
            if problem == "parked":
                verdict.parked.append(ride["id"])
            elif problem is not None:
                verdict.failures.append(problem)
                continue
            settled.add(ride["id"])
    for ride_id, n in per_ride.items():
        if n > 1:
            verdict.failures.append(f"ride {ride_id} charged {n} times")
    verdict.failures += drivers_on_two_rides(rides, assignments)
    for letter in letters or ():
        if letter_ride(letter) not in settled or not parked_rides([letter]):
            summary = {k: letter.get(k) for k in ("seq", "service", "topic", "error")}
            verdict.failures.append(f"unexplained dead letter: {summary}")
    return verdict


def _payment_problem(
    ride_id: str, charged: int, payments: Mapping[str, Mapping[str, Any]], in_letters: set[str]
) -> str | None:
    """None when the completed ride is paid exactly once, ``"parked"`` when it waits in
    the dead letters, else what is wrong, in words that say what happened."""
    status = payments.get(ride_id, {}).get("status")
    if charged == 1 and status == "captured":
        return None
    if charged == 0 and status == "failed":
        if ride_id in in_letters:
            return "parked"
        return (
            f"ride {ride_id} completed, the provider refused its payment (failed), and its "
            "ride.completed is not in the dead letters: lost"
        )
    if charged == 0 and status == "captured":
        return f"ride {ride_id}: payment captured, but the provider has no charge for it"
    if charged == 0:
        return (
            f"ride {ride_id} completed but not paid when the run ended (payment "
            f"{status or 'not opened'}; still being retried? --drain waits longer)"
        )
    if charged == 1:
        return f"ride {ride_id} charged once, but its payment is {status or 'missing'}"
    return None  # charged more than once: reported once per ride below


def drivers_on_two_rides(
    rides: Mapping[str, Mapping[str, Any]], assignments: Mapping[str, str]
) -> list[str]:
    found: list[str] = []
    by_driver: dict[str, list[tuple[str, str]]] = {}
    for ride in rides.values():
        if ride["driver_id"] and ride["matched_at"]:
            end = ride["completed_at"] or "9999"
            if ride["status"] == "cancelled":
                end = ride["matched_at"]  # freed at cancellation; its time is not kept
            by_driver.setdefault(ride["driver_id"], []).append((ride["matched_at"], end))
    for driver_id, spans in by_driver.items():
        spans.sort()
        for (_, end_a), (start_b, _) in itertools.pairwise(spans):
            if start_b < end_a:
                found.append(f"driver {driver_id} was on two rides at once")
    if len(set(assignments.values())) != len(assignments):
        found.append(f"matching holds a driver on two rides: {dict(assignments)}")
    return found
