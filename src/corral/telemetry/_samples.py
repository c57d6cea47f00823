"""One scrape, parsed: the counters and gauges the control plane aggregates.

A scrape becomes two flat maps keyed by tuples of strings, so that deltas between two
scrapes, sums across instances and sums over time are one generic loop each (see
:mod:`corral.telemetry._window`). The text is read with prometheus_client's own parser.

Counter keys (monotonic; the window takes their increments)::

    ("http", method, route, status)       requests answered (Envoy: status class "5xx")
    ("bucket", method, route, le)         observations in one latency bucket (not
                                          cumulative), le in seconds as text ("+Inf")
    ("latency_sum", method, route)        seconds spent
    ("calls", target, outcome)            client calls (outcome ok or the error reason)
    ("retries", target)                   client retries (the gateway's, per cluster)
    ("budget_exhausted", target)
    ("circuit_changes", target, state)    circuit transitions, by the state entered
    ("bulkhead_rejections", target)
    ("fallbacks", target)
    ("rate_limited",)                     requests the gateway's rate limits refused
    ("cpu",)                              process CPU seconds

Gauge keys (the latest value counts)::

    ("in_flight",)  ("rss",)  ("circuit_state", target)   0 closed, 1 half-open, 2 open
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["GATEWAY_ROUTE", "Scrape", "parse_envoy", "parse_service"]

Key = tuple[str, ...]

GATEWAY_ROUTE = "*"
"""The route label of the gateway's downstream totals (all routes together)."""

_ENVOY_CONNECTION_MANAGER = "gateway"
"""The gateway listener's stat prefix (corral.gateway renders it); the admin and stats
listeners have their own and are not traffic."""
_ENVOY_BUCKETS = ("envoy_http_downstream_rq_time_bucket", "envoy_cluster_upstream_rq_time_bucket")
_ENVOY_SUMS = ("envoy_http_downstream_rq_time_sum", "envoy_cluster_upstream_rq_time_sum")


@dataclass
class Scrape:
    counters: dict[Key, float] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)

    def add(self, key: Key, value: float) -> None:
        self.counters[key] = self.counters.get(key, 0.0) + value


def _samples(text: str) -> Iterable[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def _add_buckets(scrape: Scrape, prefix: Key, cumulative: dict[float, float]) -> None:
    """Cumulative ``le`` counts -> per-bucket counts under ``("bucket", *prefix, le)``."""
    below = 0.0
    for bound in sorted(cumulative):
        count = cumulative[bound]
        le = "+Inf" if math.isinf(bound) else repr(bound)
        scrape.add(("bucket", *prefix, le), max(count - below, 0.0))
        below = max(count, below)


def parse_service(text: str) -> Scrape:
    """A corral.sdk service's ``/metrics`` (see corral.sdk._metrics and client telemetry)."""
    scrape = Scrape()
    buckets: dict[Key, dict[float, float]] = {}
    for sample in _samples(text):
        name, labels, value = sample.name, sample.labels, sample.value
        target = labels.get("target", "")
        if name == "http_requests_total":
            scrape.add(("http", labels["method"], labels["route"], labels["status"]), value)
        elif name == "http_request_duration_seconds_bucket":
            route = (labels["method"], labels["route"])
            buckets.setdefault(route, {})[float(labels["le"])] = value
        elif name == "http_request_duration_seconds_sum":
            scrape.add(("latency_sum", labels["method"], labels["route"]), value)
        elif name == "corral_client_calls_total":
            scrape.add(("calls", target, labels["outcome"]), value)
        elif name == "corral_client_retries_total":
            scrape.add(("retries", target), value)
        elif name == "corral_client_retry_budget_exhausted_total":
            scrape.add(("budget_exhausted", target), value)
        elif name == "corral_client_circuit_transitions_total":
            scrape.add(("circuit_changes", target, labels["state"]), value)
        elif name == "corral_client_bulkhead_rejections_total":
            scrape.add(("bulkhead_rejections", target), value)
        elif name == "corral_client_fallbacks_total":
            scrape.add(("fallbacks", target), value)
        elif name == "process_cpu_seconds_total":
            scrape.add(("cpu",), value)
        elif name == "corral_client_circuit_state":
            scrape.gauges["circuit_state", target] = value
        elif name == "http_requests_in_flight":
            scrape.gauges["in_flight",] = value
        elif name == "process_resident_memory_bytes":
            scrape.gauges["rss",] = value
    for prefix, cumulative in buckets.items():
        _add_buckets(scrape, prefix, cumulative)
    return scrape


def parse_envoy(text: str, *, internal_prefix: str) -> Scrape:
    """Envoy's ``/stats/prometheus`` (its counters read as ``*_total``, as the parser
    names every counter sample): the gateway listener's requests (route ``*``) and
    each upstream cluster's (route = the service), answered by status class, with their
    latency histograms (Envoy's are in milliseconds). Clusters named ``internal_prefix*``
    (Corral's own, e.g. the admin socket) are left out."""
    scrape = Scrape()
    buckets: dict[Key, dict[float, float]] = {}
    for sample in _samples(text):
        name, labels, value = sample.name, sample.labels, sample.value
        cluster = labels.get("envoy_cluster_name")
        if cluster is not None and cluster.startswith(internal_prefix):
            continue
        manager = labels.get("envoy_http_conn_manager_prefix")
        if manager is not None and manager != _ENVOY_CONNECTION_MANAGER:
            continue
        route = GATEWAY_ROUTE if cluster is None else cluster
        if name in ("envoy_http_downstream_rq_xx_total", "envoy_cluster_upstream_rq_xx_total"):
            status = labels["envoy_response_code_class"] + "xx"
            scrape.add(("http", "", route, status), value)
        elif name in _ENVOY_BUCKETS:
            buckets.setdefault(("", route), {})[float(labels["le"]) / 1000.0] = value
        elif name in _ENVOY_SUMS:
            scrape.add(("latency_sum", "", route), value / 1000.0)
        elif name == "envoy_cluster_upstream_rq_retry_total":
            scrape.add(("retries", route), value)
        elif name.endswith("rate_limited_total") and cluster is None:
            scrape.add(("rate_limited",), value)
        elif name == "envoy_http_downstream_rq_active" and manager is not None:
            scrape.gauges["in_flight",] = value
    for prefix, cumulative in buckets.items():
        _add_buckets(scrape, prefix, cumulative)
    return scrape
