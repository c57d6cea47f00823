"""Resolved ``resilience:`` section (pure). See corral.manifest._resilience.

Every target gets a complete policy: its own sections, else the ``defaults`` section, else
the built-in defaults below (which the SDK also applies when ``CORRAL_RESILIENCE`` is
unset, so a system without the section behaves the same everywhere). Routes inherit the
target's timeout and retries. :func:`resilience_environment` renders the policies a
calling service needs as the ``CORRAL_RESILIENCE`` JSON the SDK reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral import contract
from corral.manifest import BulkheadSpec, Manifest, PolicySpec, ResilienceSpec, RetriesSpec
from corral.manifest import ResilienceCircuitBreakerSpec as CircuitBreakerSpec

if TYPE_CHECKING:
    from corral.plan._model import Plan

__all__ = [
    "DEFAULT_TIMEOUT",
    "BreakerPlan",
    "BulkheadPlan",
    "PolicyPlan",
    "ResiliencePlan",
    "RetryPlan",
    "RoutePolicyPlan",
    "TargetPlan",
    "resilience_environment",
    "resolve_resilience",
]

FORMAT_VERSION = 1
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONSECUTIVE_FAILURES = 5


@dataclass(frozen=True)
class RetryPlan:
    attempts: int
    initial: float
    max: float
    on_status: tuple[int, ...]
    budget_ratio: float
    budget_window: float
    budget_min_per_second: float

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "backoff": {"initial": self.initial, "max": self.max},
            "on_status": list(self.on_status),
            "budget": {
                "ratio": self.budget_ratio,
                "window": self.budget_window,
                "min_per_second": self.budget_min_per_second,
            },
        }


@dataclass(frozen=True)
class BreakerPlan:
    consecutive_failures: int | None
    failure_rate: float | None
    window: float
    min_calls: int
    wait: float

    def to_json(self) -> dict[str, Any]:
        return {
            "consecutive_failures": self.consecutive_failures,
            "failure_rate": self.failure_rate,
            "window": self.window,
            "min_calls": self.min_calls,
            "wait": self.wait,
        }


@dataclass(frozen=True)
class BulkheadPlan:
    max_concurrent: int
    max_queue: int

    def to_json(self) -> dict[str, Any]:
        return {"max_concurrent": self.max_concurrent, "max_queue": self.max_queue}


@dataclass(frozen=True)
class RoutePolicyPlan:
    methods: tuple[str, ...]
    """Empty: every method."""
    prefix: str
    timeout: float
    retries: RetryPlan

    def to_json(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "prefix": self.prefix,
            "timeout": self.timeout,
            "retries": self.retries.to_json(),
        }


@dataclass(frozen=True)
class PolicyPlan:
    timeout: float
    retries: RetryPlan
    circuit_breaker: BreakerPlan | None
    bulkhead: BulkheadPlan | None
    routes: tuple[RoutePolicyPlan, ...] = ()
    """In manifest order: the first match wins."""

    def to_json(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "retries": self.retries.to_json(),
            "circuit_breaker": None
            if self.circuit_breaker is None
            else self.circuit_breaker.to_json(),
            "bulkhead": None if self.bulkhead is None else self.bulkhead.to_json(),
            "routes": [route.to_json() for route in self.routes],
        }


@dataclass(frozen=True)
class TargetPlan:
    service: str
    policy: PolicyPlan


@dataclass(frozen=True)
class ResiliencePlan:
    defaults: PolicyPlan
    """For targets without their own entry."""
    targets: tuple[TargetPlan, ...]
    """Sorted by service name."""

    def policy(self, service: str) -> PolicyPlan:
        for target in self.targets:
            if target.service == service:
                return target.policy
        return self.defaults

    def to_json(self, caller: str | None = None) -> dict[str, Any]:
        """The ``CORRAL_RESILIENCE`` document for ``caller`` (its own entry left out)."""
        return {
            "version": FORMAT_VERSION,
            "defaults": self.defaults.to_json(),
            "services": {
                t.service: t.policy.to_json() for t in self.targets if t.service != caller
            },
        }


def _retries(spec: RetriesSpec) -> RetryPlan:
    return RetryPlan(
        attempts=spec.attempts,
        initial=spec.backoff.initial,
        max=spec.backoff.max,
        on_status=spec.on_status,
        budget_ratio=spec.budget.ratio,
        budget_window=spec.budget.window,
        budget_min_per_second=spec.budget.min_per_second,
    )


def _breaker(spec: CircuitBreakerSpec) -> BreakerPlan:
    consecutive = spec.consecutive_failures
    if consecutive is None and spec.failure_rate is None:
        consecutive = DEFAULT_CONSECUTIVE_FAILURES
    return BreakerPlan(
        consecutive_failures=consecutive,
        failure_rate=spec.failure_rate,
        window=spec.window,
        min_calls=spec.min_calls,
        wait=spec.wait,
    )


def _bulkhead(spec: BulkheadSpec) -> BulkheadPlan:
    return BulkheadPlan(max_concurrent=spec.max_concurrent, max_queue=spec.max_queue)


def _merge(spec: PolicySpec, base: PolicySpec) -> PolicyPlan:
    """``spec``'s sections, else ``base``'s, else the built-in defaults."""
    retries = spec.retries or base.retries or RetriesSpec()
    breaker = spec.circuit_breaker if spec.circuit_breaker is not None else base.circuit_breaker
    bulkhead = spec.bulkhead if spec.bulkhead is not None else base.bulkhead
    return PolicyPlan(
        timeout=spec.timeout or base.timeout or DEFAULT_TIMEOUT,
        retries=_retries(retries),
        circuit_breaker=(
            None
            if breaker is False
            else _breaker(breaker if breaker is not None else CircuitBreakerSpec())
        ),
        bulkhead=None if bulkhead is None or bulkhead is False else _bulkhead(bulkhead),
    )


def build_resilience(spec: ResilienceSpec) -> ResiliencePlan:
    defaults = _merge(spec.defaults, PolicySpec())
    targets = []
    for name, target in sorted(spec.services.items()):
        policy = _merge(target, spec.defaults)
        routes = tuple(
            RoutePolicyPlan(
                methods=route.match.methods,
                prefix=route.match.prefix,
                timeout=route.timeout or policy.timeout,
                retries=_retries(route.retries) if route.retries else policy.retries,
            )
            for route in target.routes
        )
        targets.append(
            TargetPlan(
                name,
                PolicyPlan(
                    timeout=policy.timeout,
                    retries=policy.retries,
                    circuit_breaker=policy.circuit_breaker,
                    bulkhead=policy.bulkhead,
                    routes=routes,
                ),
            )
        )
    return ResiliencePlan(defaults=defaults, targets=tuple(targets))


DEFAULT_PLAN = build_resilience(ResilienceSpec())
"""What applies without a ``resilience:`` section (the SDK's built-in defaults)."""


def resolve_resilience(manifest: Manifest) -> ResiliencePlan | None:
    """The resolved section, or None when the manifest has none."""
    if manifest.spec.resilience is None:
        return None
    return build_resilience(manifest.spec.resilience)


def resilience_environment(plan: Plan, service: str) -> dict[str, str]:
    """``{CORRAL_RESILIENCE: json}`` for instances of ``service`` (empty without a section:
    the SDK's built-in defaults are the same as :data:`DEFAULT_PLAN`)."""
    if plan.resilience is None:
        return {}
    document = plan.resilience.to_json(caller=service)
    return {contract.RESILIENCE: json.dumps(document, sort_keys=True, separators=(",", ":"))}
