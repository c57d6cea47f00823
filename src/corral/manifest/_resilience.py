"""The ``resilience:`` section: policies for service-to-service calls, per target service.

Owned by the discovery and resilience work (issue 6); see docs/resilience.md. Shape::

    resilience:
      defaults:                        # every target without its own entry (all optional)
        timeout: 2s
      services:
        payments:                      # the *called* service
          timeout: 2s                  # per attempt; also bounds a half-open probe
          retries:
            attempts: 3                # total, the first call included; 1 = no retries
            backoff: {initial: 50ms, max: 1s}   # exponential, full jitter
            on_status: [502, 503, 504]
            budget: {ratio: 0.2, window: 10s, min_per_second: 3}
          circuit_breaker:             # or `false` to switch the default one off
            consecutive_failures: 5    # and/or failure_rate + window + min_calls
            wait: 10s                  # open -> half-open (one probe at a time)
          bulkhead: {max_concurrent: 32, max_queue: 16}
          routes:                      # optional: timeout/retries per method + prefix
            - match: {methods: [POST], prefix: /charges}
              timeout: 5s
              retries: {attempts: 1}

Only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or requests carrying an
``Idempotency-Key`` header are ever retried. Fallbacks are code (``fallback=`` in the SDK),
never YAML. Cross-section checks (unknown target services) live in
:func:`check_resilience`, called from ``_checks.check_system``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from corral.manifest._diagnostics import Diagnostic, shown
from corral.manifest._references import unknown_service
from corral.manifest._source import SourceMap
from corral.manifest._types import STRICT, Duration, Int, Name, Number, parse_methods

__all__ = [
    "BackoffSpec",
    "BudgetSpec",
    "BulkheadSpec",
    "CircuitBreakerSpec",
    "PolicySpec",
    "ResilienceRouteSpec",
    "ResilienceSpec",
    "RetriesSpec",
    "RouteMatchSpec",
    "TargetPolicySpec",
    "check_resilience",
]

HTTP_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "POST", "PATCH"})


class BackoffSpec(BaseModel):
    """Exponential backoff with full jitter: sleep ``random(0, min(max, initial * 2**n))``."""

    model_config = STRICT

    initial: Duration = Field(default=0.05, gt=0)
    max: Duration = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max < self.initial:
            raise ValueError("backoff max must be at least initial")
        return self


class BudgetSpec(BaseModel):
    """Retries allowed: ``ratio`` x calls over ``window``, plus ``min_per_second``."""

    model_config = STRICT

    ratio: Number = Field(default=0.2, ge=0, le=10)
    window: Duration = Field(default=10.0, gt=0)
    min_per_second: Number = Field(default=3.0, ge=0)


class RetriesSpec(BaseModel):
    model_config = STRICT

    attempts: Int = Field(default=3, ge=1, le=10, description="Total attempts; 1 = no retry.")
    backoff: BackoffSpec = BackoffSpec()
    on_status: tuple[Int, ...] = Field(default=(502, 503, 504))
    budget: BudgetSpec = BudgetSpec()

    @field_validator("on_status")
    @classmethod
    def _statuses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for status in value:
            if not 400 <= status <= 599:
                raise ValueError(f"retry on_status takes 4xx/5xx codes, not {status}")
        return tuple(sorted(set(value)))


class CircuitBreakerSpec(BaseModel):
    """Opens on ``consecutive_failures`` in a row, or on ``failure_rate`` over ``window``
    once ``min_calls`` were made; after ``wait`` one probe at a time decides."""

    model_config = STRICT

    consecutive_failures: Int | None = Field(default=None, ge=1, description="Default 5.")
    failure_rate: Number | None = Field(default=None, gt=0, le=1)
    window: Duration = Field(default=30.0, gt=0)
    min_calls: Int = Field(default=10, ge=1)
    wait: Duration = Field(default=10.0, gt=0)


class BulkheadSpec(BaseModel):
    """At most ``max_concurrent`` calls in flight, ``max_queue`` waiting, the rest rejected."""

    model_config = STRICT

    max_concurrent: Int = Field(ge=1)
    max_queue: Int = Field(default=0, ge=0)


class PolicySpec(BaseModel):
    """A policy for calls to one target (or, under ``defaults``, to any target)."""

    model_config = STRICT

    timeout: Duration | None = Field(default=None, gt=0, description="Per attempt.")
    retries: RetriesSpec | None = None
    circuit_breaker: CircuitBreakerSpec | Literal[False] | None = None
    bulkhead: BulkheadSpec | Literal[False] | None = None


class RouteMatchSpec(BaseModel):
    model_config = STRICT

    prefix: str = "/"
    methods: tuple[str, ...] = Field(default=(), description="All methods when empty.")

    @field_validator("prefix")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a path prefix must start with '/', got {shown(value)}")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        return parse_methods(value, HTTP_METHODS)


class ResilienceRouteSpec(BaseModel):
    """Timeout and retries for some routes of a target (breaker and bulkhead stay per target:
    they protect the target as a whole)."""

    model_config = STRICT

    match: RouteMatchSpec
    timeout: Duration | None = Field(default=None, gt=0)
    retries: RetriesSpec | None = None


class TargetPolicySpec(PolicySpec):
    routes: tuple[ResilienceRouteSpec, ...] = ()


class ResilienceSpec(BaseModel):
    model_config = STRICT

    defaults: PolicySpec = PolicySpec()
    services: dict[Name, TargetPolicySpec] = Field(default_factory=dict)


def check_resilience(
    resilience: ResilienceSpec | None, services: list[str], source: SourceMap
) -> list[Diagnostic]:
    """Every target named under ``resilience.services`` is a service of the system."""
    if resilience is None:
        return []
    found = (
        unknown_service(("resilience", "services", name), name, services, source)
        for name in sorted(resilience.services)
    )
    return [problem for problem in found if problem is not None]
