"""A service's ``autoscale:`` policy: how many instances, by which measure.

Example::

    autoscale:
      min: 1
      max: 6
      target: {in_flight: 8}      # or {p95: 250ms}, {cpu: 700m}, {lag: 100, topic: ride.requested}
      stabilization: {up: 0s, down: 30s}
      cooldown: {up: 5s, down: 30s}

One target, one number: requests in flight per instance, the service's p95 latency, CPU
cores per instance, or messages waiting for the service on one of the topics it
consumes, per instance. Cross-references (the topic) are checked by
:func:`autoscale_problems`; see docs/autoscale.md for how the autoscaler decides.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from corral.manifest._diagnostics import Diagnostic, shown
from corral.manifest._source import SourceMap
from corral.manifest._types import STRICT, Cpu, Duration, Int, Number, problem

__all__ = ["AutoscaleSpec", "AutoscaleTarget", "autoscale_problems"]

Metric = Literal["in_flight", "p95", "cpu", "lag"]


class AutoscaleTarget(BaseModel):
    """Exactly one of the measures, and for ``lag`` the topic."""

    model_config = STRICT

    in_flight: Number | None = Field(default=None, gt=0, description="Requests per instance.")
    p95: Duration | None = Field(default=None, gt=0, description="The service's p95 latency.")
    cpu: Cpu | None = Field(default=None, gt=0, description="CPU cores per instance (700m).")
    lag: Int | None = Field(default=None, gt=0, description="Waiting messages per instance.")
    topic: str | None = Field(default=None, description="The consumed topic (lag only).")

    @model_validator(mode="after")
    def _one_measure(self) -> Self:
        given = [m for m in ("in_flight", "p95", "cpu", "lag") if getattr(self, m) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise problem(
                f"an autoscale target needs exactly one of in_flight, p95, cpu or lag "
                f"(found: {found})",
                "e.g. target: {in_flight: 8}",
            )
        if (self.lag is None) != (self.topic is None):
            if self.topic is None:
                raise problem(
                    "a lag target needs the topic it counts",
                    "e.g. target: {lag: 100, topic: ride.requested}",
                )
            raise problem("topic is for a lag target only", at="topic")
        return self

    @property
    def metric(self) -> Metric:
        for name in ("in_flight", "p95", "cpu", "lag"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("validated: one measure")  # pragma: no cover

    @property
    def value(self) -> float:
        return float(getattr(self, self.metric))


class Window(BaseModel):
    model_config = STRICT

    up: Duration = Field(default=0.0, ge=0)
    down: Duration = Field(default=30.0, ge=0)


class AutoscaleSpec(BaseModel):
    model_config = STRICT

    min: Int = Field(default=1, ge=0, le=64)
    max: Int = Field(ge=1, le=64)
    target: AutoscaleTarget
    stabilization: Window = Field(
        default=Window(up=0.0, down=30.0),
        description="Scale to the lowest (up) or highest (down) recommendation of this "
        "window: a short spike does not scale in, nor a short lull out.",
    )
    cooldown: Window = Field(
        default=Window(up=5.0, down=30.0),
        description="After a change, no scale-out for `up`, no scale-in for `down`.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise problem(
                f"autoscale min ({self.min}) is larger than max ({self.max})",
                "min is the fewest instances, max the most",
                at="min",
            )
        return self


def autoscale_problems(
    name: str,
    spec: AutoscaleSpec | None,
    consumed: frozenset[str],
    source: SourceMap,
) -> list[Diagnostic]:
    """A lag target names a topic ``name`` consumes (``consumed``: its topics)."""
    if spec is None or spec.target.topic is None:
        return []
    topic = spec.target.topic
    if topic in consumed:
        return []
    hint = (
        f"it consumes: {', '.join(sorted(consumed))}"
        if consumed
        else f"list {name} under events.topics.{topic}.consumers"
    )
    return [
        source.diagnostic(
            ("services", name, "autoscale", "target", "topic"),
            f"service {name!r} does not consume topic {shown(topic)}",
            hint,
        )
    ]
