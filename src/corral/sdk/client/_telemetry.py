"""What service calls report: Prometheus metrics, structlog events and span events.

Metrics go into the service's own registry when there is one (``svc.metrics.registry``),
so they appear on its ``/metrics``; circuit states are also a gauge there, which is what
``corral status`` reads (0 closed, 1 half-open, 2 open)::

    corral_client_calls_total{target, outcome}            outcome: ok | <error reason>
    corral_client_retries_total{target}
    corral_client_retry_budget_exhausted_total{target}
    corral_client_circuit_state{target}
    corral_client_circuit_transitions_total{target, state}
    corral_client_bulkhead_rejections_total{target}
    corral_client_fallbacks_total{target, reason}
    corral_client_faults_injected_total{target}           caller-side chaos faults applied

Each resilience decision is also an event on the current span (the CLIENT span of the
call when the service exports spans): ``corral.client.retry``,
``corral.client.retry_budget_exhausted``, ``corral.client.circuit`` (a state change),
``corral.client.circuit_rejected``, ``corral.client.bulkhead_rejected``,
``corral.client.fallback`` and ``corral.client.chaos`` (an injected fault).
"""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.sdk._logging import get_logger
from corral.sdk.client._breaker import CircuitState

__all__ = ["CIRCUIT_STATE_VALUES", "CallCounts", "ClientTelemetry"]

CIRCUIT_STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class CallCounts:
    """Outcome counts of one target's calls: ``corral_client_calls_total``.

    Plain integers bumped on the event loop and read at scrape time by
    :class:`_CallsCollector` (prometheus_client's custom-collector API), instead of a
    labelled ``Counter`` child: its ``inc`` is three Python calls and a lock per call,
    which the client's hot path (one count per call) cannot afford. Without the lock, the
    counts are exact only while one thread bumps them: clients of a service are used on
    its event loop (a client used from several threads' loops could lose a count; and
    there is no ``_created`` sample, which Counter would export).
    """

    __slots__ = ("failed", "ok")

    def __init__(self) -> None:
        self.ok = 0
        self.failed: dict[str, int] = {}

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1


class _CallsCollector(Collector):
    _NAME = "corral_client_calls"
    _HELP = "Calls to other services, by outcome."

    def __init__(self) -> None:
        self.targets: dict[str, CallCounts] = {}

    def describe(self) -> Iterator[Metric]:
        # names only, so registering never calls collect()
        yield CounterMetricFamily(self._NAME, self._HELP, labels=("target", "outcome"))

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._NAME, self._HELP, labels=("target", "outcome"))
        # list() copies in one C call: a scrape from a worker thread never iterates a
        # dict the event loop is growing
        for target, counts in list(self.targets.items()):
            family.add_metric((target, "ok"), counts.ok)
            for reason, value in list(counts.failed.items()):
                family.add_metric((target, reason), value)
        yield family


class ClientTelemetry:
    """One per registry; shared by all clients of a service."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._calls = _CallsCollector()
        r.register(self._calls)
        self.retries = Counter(
            "corral_client_retries", "Retried attempts to other services.", ("target",), registry=r
        )
        self.budget_exhausted = Counter(
            "corral_client_retry_budget_exhausted",
            "Retries not made because the retry budget was spent.",
            ("target",),
            registry=r,
        )
        self.circuit_state = Gauge(
            "corral_client_circuit_state",
            "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
            ("target",),
            registry=r,
        )
        self.circuit_transitions = Counter(
            "corral_client_circuit_transitions",
            "Circuit breaker state changes, by the state entered.",
            ("target", "state"),
            registry=r,
        )
        self.bulkhead_rejections = Counter(
            "corral_client_bulkhead_rejections",
            "Calls rejected because the target's bulkhead was full.",
            ("target",),
            registry=r,
        )
        self.fallbacks = Counter(
            "corral_client_fallbacks",
            "Fallbacks used instead of a failed call, by the failure.",
            ("target", "reason"),
            registry=r,
        )
        self.faults_injected = Counter(
            "corral_client_faults_injected",
            "Attempts a caller-side chaos fault delayed or aborted.",
            ("target",),
            registry=r,
        )
        self.log = get_logger()

    def counts(self, target: str) -> CallCounts:
        """The call counts of ``target`` (a client keeps them: one ``+= 1`` per call)."""
        counts = self._calls.targets.get(target)
        if counts is None:
            counts = self._calls.targets[target] = CallCounts()
        return counts

    def call_ok(self, target: str) -> None:
        self.counts(target).ok += 1

    def call_failed(self, target: str, reason: str) -> None:
        self.counts(target).fail(reason)

    def retry(self, target: str, attempt: int, delay: float, why: str) -> None:
        self.retries.labels(target).inc()
        self.log.info(
            "client retry", target=target, attempt=attempt, delay_ms=round(delay * 1000, 1), why=why
        )
        _span_event("corral.client.retry", target=target, attempt=attempt, why=why)

    def budget_spent(self, target: str, attempt: int) -> None:
        self.budget_exhausted.labels(target).inc()
        self.log.warning("client retry budget exhausted", target=target, attempt=attempt)
        _span_event("corral.client.retry_budget_exhausted", target=target)

    def circuit_changed(self, target: str, old: CircuitState, new: CircuitState, why: str) -> None:
        self.circuit_state.labels(target).set(CIRCUIT_STATE_VALUES[new])
        self.circuit_transitions.labels(target, new.value).inc()
        log = self.log.warning if new is CircuitState.OPEN else self.log.info
        log("circuit state changed", target=target, old=old.value, new=new.value, why=why)
        _span_event("corral.client.circuit", target=target, old=old.value, new=new.value, why=why)

    def circuit_created(self, target: str) -> None:
        self.circuit_state.labels(target).set(0)

    def circuit_rejected(self, target: str, reason: str) -> None:
        """An attempt refused by an open (or probing half-open) breaker: no log line,
        which an open circuit would repeat per call; the span event and the calls counter
        (outcome ``circuit_open``) say it."""
        _span_event("corral.client.circuit_rejected", target=target, reason=reason)

    def fault_injected(self, target: str, experiment: str, fault: str, attempt: int) -> None:
        self.faults_injected.labels(target).inc()
        _span_event(
            "corral.client.chaos",
            target=target,
            experiment=experiment,
            fault=fault,
            attempt=attempt,
        )

    def bulkhead_rejected(self, target: str, active: int, queued: int) -> None:
        self.bulkhead_rejections.labels(target).inc()
        self.log.warning("bulkhead full", target=target, in_flight=active, queued=queued)
        _span_event("corral.client.bulkhead_rejected", target=target)

    def fallback_used(self, target: str, reason: str, error: str) -> None:
        self.fallbacks.labels(target, reason).inc()
        self.log.warning("fallback used", target=target, reason=reason, error=error)
        _span_event("corral.client.fallback", target=target, reason=reason)


def _span_event(name: str, **attributes: str | int) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)
