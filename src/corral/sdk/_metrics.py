"""RED metrics in a per-service ``CollectorRegistry`` (several services can share a process).

The per-request path is plain Python arithmetic: prometheus-client's ``Counter`` and
``Histogram`` take a lock and run checks on every ``inc``/``observe`` (about 4 us per
request for the three metrics, a tenth of the SDK's whole overhead). Here a request adds
to a count, one bucket and a sum in dicts keyed by labels, and a custom collector turns
them into the same families at scrape time (cumulative buckets, ``_created`` series).
Only the event loop's thread records (the middleware); a scrape from another thread
reads snapshots of the dicts, so it may see a request counted but not yet timed, as
with prometheus-client's own per-value locks.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["UNMATCHED_ROUTE", "HttpMetrics"]

UNMATCHED_ROUTE = "<unmatched>"
"""Route label of requests no route matched (a raw path would explode the label space)."""

# Latency buckets for an internal service: sub-millisecond to a slow 10 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# repr() spells these bounds as prometheus-client does ("0.001", "1.0"); a test checks.
_BUCKET_LABELS = (*(repr(b) for b in BUCKETS), "+Inf")


class _Timing:
    """One (method, route) histogram: per-bucket counts (not cumulative), sum, creation."""

    __slots__ = ("buckets", "created", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.created = time.time()


class _Series:
    """One (method, route, status) request count, with its (method, route) histogram, so
    a request costs one dict lookup."""

    __slots__ = ("count", "created", "timing")

    def __init__(self, timing: _Timing) -> None:
        self.count = 0
        self.created = time.time()
        self.timing = timing


class _HttpCollector(Collector):
    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        # Exported like prometheus-client's own, which honours disable_created_metrics().
        created = getattr(_prometheus_metrics, "_use_created", True)
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests handled, by method, route template and status.",
            labels=("method", "route", "status"),
        )
        for (method, route, status), series in list(self._metrics._series.items()):
            when = series.created if created else None
            requests.add_metric((method, route, str(status)), series.count, created=when)
        yield requests
        duration = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            labels=("method", "route"),
        )
        for (method, route), timing in list(self._metrics._timings.items()):
            running = 0
            cumulative: list[tuple[str, float]] = []
            for label, count in zip(_BUCKET_LABELS, list(timing.buckets), strict=True):
                running += count
                cumulative.append((label, running))
            duration.add_metric((method, route), cumulative, timing.total)
            if created:
                duration.samples.append(
                    Sample(
                        "http_request_duration_seconds_created",
                        {"method": method, "route": route},
                        timing.created,
                    )
                )
        yield duration


class HttpMetrics:
    """The service's registry and its HTTP metrics.

    The middleware records with :meth:`observe` and moves :attr:`active` up and down;
    everything else reads the registry (``render``, ``sample``, ``generate_latest``).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            process_collector.ProcessCollector(registry=self.registry)
            platform_collector.PlatformCollector(registry=self.registry)
            gc_collector.GCCollector(registry=self.registry)
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._timings: dict[tuple[str, str], _Timing] = {}
        self.active = 0
        """Requests being handled now (``http_requests_in_flight``)."""
        self.registry.register(_HttpCollector(self))
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being handled now.",
            registry=self.registry,
        )
        self.in_flight.set_function(lambda: self.active)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self._series.get((method, route, status))
        if series is None:
            timing = self._timings.get((method, route))
            if timing is None:
                timing = self._timings[method, route] = _Timing()
            series = self._series[method, route, status] = _Series(timing)
        series.count += 1
        timing = series.timing
        # Buckets are inclusive upper bounds (le): bisect_left puts 0.005 in "0.005".
        timing.buckets[bisect_left(BUCKETS, seconds)] += 1
        timing.total += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value, e.g. ``sample("http_requests_total", {"route": "/x", ...})``."""
        return self.registry.get_sample_value(name, labels or {})
