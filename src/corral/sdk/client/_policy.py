"""Resilience policies as the SDK reads them from ``CORRAL_RESILIENCE`` (JSON).

The control plane renders the document from the manifest's ``resilience:`` section
(``corral.plan._resilience``); without it the built-in defaults here apply, and they are
the same numbers as the manifest's defaults. A malformed document is a deployment
mistake: it fails loudly at start, naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral import contract

__all__ = ["BreakerPolicy", "BulkheadPolicy", "Policies", "Policy", "RetryPolicy", "RoutePolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
IDEMPOTENCY_KEY = "idempotency-key"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial: float = 0.05
    max: float = 1.0
    on_status: frozenset[int] = frozenset({502, 503, 504})
    budget_ratio: float = 0.2
    budget_window: float = 10.0
    budget_min_per_second: float = 3.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetryPolicy:
        backoff = data.get("backoff", {})
        budget = data.get("budget", {})
        return cls(
            attempts=int(data.get("attempts", 3)),
            initial=float(backoff.get("initial", 0.05)),
            max=float(backoff.get("max", 1.0)),
            on_status=frozenset(int(s) for s in data.get("on_status", (502, 503, 504))),
            budget_ratio=float(budget.get("ratio", 0.2)),
            budget_window=float(budget.get("window", 10.0)),
            budget_min_per_second=float(budget.get("min_per_second", 3.0)),
        )


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive_failures: int | None = 5
    failure_rate: float | None = None
    window: float = 30.0
    min_calls: int = 10
    wait: float = 10.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BreakerPolicy:
        consecutive = data.get("consecutive_failures")
        rate = data.get("failure_rate")
        return cls(
            consecutive_failures=None if consecutive is None else int(consecutive),
            failure_rate=None if rate is None else float(rate),
            window=float(data.get("window", 30.0)),
            min_calls=int(data.get("min_calls", 10)),
            wait=float(data.get("wait", 10.0)),
        )


@dataclass(frozen=True)
class BulkheadPolicy:
    max_concurrent: int
    max_queue: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BulkheadPolicy:
        return cls(int(data["max_concurrent"]), int(data.get("max_queue", 0)))


@dataclass(frozen=True)
class RoutePolicy:
    prefix: str
    methods: frozenset[str]
    timeout: float
    retries: RetryPolicy

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        prefix = self.prefix
        return (
            prefix == "/"
            or path == prefix
            or (path.startswith(prefix) and (prefix.endswith("/") or path[len(prefix)] in "/?"))
        )


@dataclass(frozen=True)
class Policy:
    """What protects calls to one target."""

    timeout: float = 10.0
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)
    bulkhead: BulkheadPolicy | None = None
    routes: tuple[RoutePolicy, ...] = ()

    def for_route(self, method: str, path: str) -> tuple[float, RetryPolicy]:
        """Timeout and retries of a request (the first matching route, else the target's)."""
        for route in self.routes:
            if route.matches(method, path):
                return route.timeout, route.retries
        return self.timeout, self.retries

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        timeout = float(data.get("timeout", 10.0))
        retries = RetryPolicy.from_json(data.get("retries") or {})
        breaker = data.get("circuit_breaker", {})
        bulkhead = data.get("bulkhead")
        routes = tuple(
            RoutePolicy(
                prefix=str(route.get("prefix", "/")),
                methods=frozenset(str(m).upper() for m in route.get("methods", ())),
                timeout=float(route.get("timeout", timeout)),
                retries=RetryPolicy.from_json(route["retries"])
                if route.get("retries")
                else retries,
            )
            for route in data.get("routes", ())
        )
        return cls(
            timeout=timeout,
            retries=retries,
            circuit_breaker=None if breaker is None else BreakerPolicy.from_json(breaker),
            bulkhead=None if bulkhead is None else BulkheadPolicy.from_json(bulkhead),
            routes=routes,
        )


@dataclass(frozen=True)
class Policies:
    """Policies per target service, with defaults for the others."""

    defaults: Policy = field(default_factory=Policy)
    services: Mapping[str, Policy] = field(default_factory=dict)

    def for_target(self, service: str) -> Policy:
        return self.services.get(service, self.defaults)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Policies:
        return cls(
            defaults=Policy.from_json(document.get("defaults", {})),
            services={
                name: Policy.from_json(policy)
                for name, policy in document.get("services", {}).items()
            },
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policies:
        """From ``CORRAL_RESILIENCE``; the built-in defaults when it is unset."""
        raw = (os.environ if environ is None else environ).get(contract.RESILIENCE)
        if not raw:
            return cls()
        try:
            return cls.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{contract.RESILIENCE} is not a valid policy document: {exc}"
            ) from exc
