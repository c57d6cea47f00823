"""The autoscaling policy, pure: observations in, a replica count and its reason out.

Modelled on Kubernetes' HorizontalPodAutoscaler (its documented algorithm and
``behavior`` field), so a policy means the same locally and exported:

1. **Recommendation.** For a per-instance measure (in-flight requests, CPU) and for p95
   latency: ``ceil(current * value / target)``; for consumer lag (messages waiting for
   the whole service): ``ceil(value / target)``. Within 10% of the target (the HPA's
   tolerance) the recommendation is the current count. Clamped to ``[min, max]``.
2. **Stabilization.** Recommendations are kept with their time. Scaling out uses the
   lowest recommendation of the last ``up_stabilization`` seconds, scaling in the
   highest of the last ``down_stabilization``: a spike shorter than the window does not
   scale out, a lull shorter than it does not scale in.
3. **Cooldown.** After a change, no scale-out for ``up_cooldown`` seconds and no
   scale-in for ``down_cooldown``.

No measurement (a service with no traffic yet reports no p95) keeps the count. Every
decision carries its reason, in words, for ``corral status`` and the logs.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from corral.plan import AutoscalePlan

__all__ = ["TOLERANCE", "Autoscaler", "Decision"]

TOLERANCE = 0.1
"""Within this fraction of the target, nothing changes (the HPA's default)."""

_WHAT = {
    "in_flight": "in-flight requests per instance",
    "p95": "p95 latency",
    "cpu": "CPU cores per instance",
    "lag": "messages waiting",
}


@dataclass(frozen=True)
class Decision:
    at: float
    current: int
    desired: int
    reason: str

    @property
    def changes(self) -> bool:
        return self.desired != self.current


class Autoscaler:
    """One service's policy with its memory (recommendations, the last change)."""

    def __init__(self, policy: AutoscalePlan, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self._clock = clock
        self._recommendations: deque[tuple[float, int]] = deque()
        self._last_change: float | None = None

    def decide(self, current: int, value: float | None) -> Decision:
        """How many instances to run now, given ``current`` and the measure ``value``
        (per instance for in_flight and cpu, seconds for p95, total waiting messages for
        lag; None: not measured)."""
        now = self._clock()
        policy = self.policy
        if current < policy.min or current > policy.max:
            bound = policy.min if current < policy.min else policy.max
            return self._change(now, current, bound, f"outside [{policy.min}, {policy.max}]")
        if value is None:
            return Decision(now, current, current, f"no {_WHAT[policy.metric]} measured yet")
        raw = self._recommend(current, value)
        self._remember(now, raw)
        shown = _shown(policy.metric, value, policy.target)
        if raw > current:
            window = self._window(now, policy.up_stabilization)
            desired = min(r for _, r in window) if window else raw
            if desired <= current:
                return Decision(now, current, current, f"{shown}: stabilizing before scaling out")
            if self._cooling(now, policy.up_cooldown):
                return Decision(now, current, current, f"{shown}: cooling down")
            return self._change(now, current, desired, shown)
        if raw < current:
            window = self._window(now, policy.down_stabilization)
            desired = max(r for _, r in window) if window else raw
            if desired >= current:
                return Decision(now, current, current, f"{shown}: stabilizing before scaling in")
            if self._cooling(now, policy.down_cooldown):
                return Decision(now, current, current, f"{shown}: cooling down")
            return self._change(now, current, desired, shown)
        return Decision(now, current, current, f"{shown}: on target")

    def _recommend(self, current: int, value: float) -> int:
        policy = self.policy
        ratio = value / policy.target
        if policy.metric == "lag":
            wanted = math.ceil(ratio)
        elif abs(ratio - 1.0) <= TOLERANCE:
            wanted = current
        else:
            wanted = math.ceil(max(current, 1) * ratio)
        return max(policy.min, min(policy.max, wanted))

    def _remember(self, now: float, recommendation: int) -> None:
        self._recommendations.append((now, recommendation))
        horizon = max(self.policy.up_stabilization, self.policy.down_stabilization)
        while self._recommendations and self._recommendations[0][0] < now - horizon:
            self._recommendations.popleft()

    def _window(self, now: float, seconds: float) -> list[tuple[float, int]]:
        return [(t, r) for t, r in self._recommendations if t >= now - seconds]

    def _cooling(self, now: float, seconds: float) -> bool:
        return self._last_change is not None and now - self._last_change < seconds

    def _change(self, now: float, current: int, desired: int, why: str) -> Decision:
        self._last_change = now
        verb = "scale out" if desired > current else "scale in"
        return Decision(now, current, desired, f"{why}: {verb} {current} -> {desired}")


def _shown(metric: str, value: float, target: float) -> str:
    if metric == "p95":
        return f"{_WHAT[metric]} {value * 1000:.0f}ms vs target {target * 1000:.0f}ms"
    return f"{_WHAT[metric]} {value:g} vs target {target:g}"
