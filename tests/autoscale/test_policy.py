"""The autoscaling decision, with a fake clock: recommendation, tolerance, bounds,
stabilization windows and cooldowns."""

from __future__ import annotations

from dataclasses import replace

import pytest

from corral.autoscale import Autoscaler
from corral.plan import AutoscalePlan

POLICY = AutoscalePlan(
    min=1,
    max=6,
    metric="in_flight",
    target=8.0,
    up_stabilization=0.0,
    down_stabilization=30.0,
    up_cooldown=5.0,
    down_cooldown=30.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scaler(**changes: object) -> tuple[Autoscaler, Clock]:
    clock = Clock()
    return Autoscaler(replace(POLICY, **changes), clock=clock), clock  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metric", "target", "current", "value", "desired"),
    [
        ("in_flight", 8.0, 2, 16.0, 4),  # twice the target: twice the instances
        ("in_flight", 8.0, 2, 8.5, 2),  # within 10%: no change
        ("in_flight", 8.0, 2, 100.0, 6),  # clamped to max
        ("cpu", 0.5, 3, 0.75, 5),  # ceil(3 * 1.5)
        ("p95", 0.2, 2, 0.5, 5),  # latency 2.5x the target
        ("lag", 100.0, 1, 350.0, 4),  # waiting messages / per instance
        ("lag", 100.0, 1, 0.0, 1),  # nothing waiting: min
    ],
)
def test_the_recommendation_follows_the_measure(
    metric: str, target: float, current: int, value: float, desired: int
) -> None:
    """HPA's formula per measure, its 10% tolerance, and the [min, max] clamp."""
    autoscaler, _ = scaler(metric=metric, target=target, down_stabilization=0.0, down_cooldown=0)
    assert autoscaler.decide(current, value).desired == desired


def test_scale_in_waits_for_the_stabilization_window() -> None:
    """A lull shorter than the down window does not scale in; a long one does."""
    autoscaler, clock = scaler()
    assert autoscaler.decide(4, 8.0).desired == 4  # busy: on target
    clock.now += 10
    quiet = autoscaler.decide(4, 1.0)
    assert quiet.desired == 4
    assert "stabilizing" in quiet.reason
    clock.now += 31  # the busy recommendation has left the window
    assert autoscaler.decide(4, 1.0).desired == 1


def test_scale_out_cooldown_then_out_again() -> None:
    """After scaling out, no further scale-out until the up cooldown has passed."""
    autoscaler, clock = scaler()
    first = autoscaler.decide(1, 16.0)
    assert (first.desired, first.changes) == (2, True)
    assert "scale out 1 -> 2" in first.reason
    assert "in-flight requests per instance 16 vs target 8" in first.reason
    clock.now += 2
    held = autoscaler.decide(2, 16.0)
    assert held.desired == 2
    assert "cooling down" in held.reason
    clock.now += 4
    assert autoscaler.decide(2, 16.0).desired == 4


def test_an_up_window_ignores_a_short_spike() -> None:
    """With up_stabilization, a single high reading is not enough to scale out."""
    autoscaler, clock = scaler(up_stabilization=10.0)
    assert autoscaler.decide(2, 8.0).desired == 2
    clock.now += 1
    spike = autoscaler.decide(2, 40.0)
    assert spike.desired == 2
    assert "stabilizing" in spike.reason
    clock.now += 11
    assert autoscaler.decide(2, 40.0).desired == 6


def test_no_measure_keeps_the_count_and_bounds_are_enforced() -> None:
    """Without data nothing moves; a count outside [min, max] is brought back at once."""
    autoscaler, _ = scaler(min=2)
    idle = autoscaler.decide(3, None)
    assert idle.desired == 3
    assert "no in-flight requests per instance measured yet" in idle.reason
    assert autoscaler.decide(1, None).desired == 2
    assert autoscaler.decide(9, 8.0).desired == 6
