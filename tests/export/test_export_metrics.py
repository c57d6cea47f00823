"""Every metric the Grafana dashboard and the alert rules query exists: the SDK's own,
read from the SDK's registries after a request and a call, and ``up``. Renaming a metric
in corral.sdk makes this fail."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from corral.export import Target, render
from corral.export._prometheus import alert_rules
from corral.manifest import load
from corral.plan import Plan, resolve
from corral.sdk._metrics import HttpMetrics
from corral.sdk.client._breaker import CircuitState
from corral.sdk.client._telemetry import ClientTelemetry

ROOT = Path(__file__).resolve().parents[2]
NATS_EXPORTER = {"jetstream_stream_total_messages"}
"""prometheus-nats-exporter's (``-jsz=all``), for dead letters; not the SDK's."""
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def _sdk_metric_names() -> set[str]:
    metrics = HttpMetrics(process=False)
    metrics.observe("GET", "/x", 500, 0.01)
    registry: CollectorRegistry = metrics.registry
    telemetry = ClientTelemetry(registry)
    telemetry.call_ok("payments")
    telemetry.call_failed("payments", "timeout")
    telemetry.retry("payments", 1, 0.1, "timeout")
    telemetry.budget_spent("payments", 2)
    telemetry.circuit_changed("payments", CircuitState.CLOSED, CircuitState.OPEN, "failures")
    telemetry.bulkhead_rejected("payments", 1, 1)
    telemetry.fallback_used("payments", "open", "circuit open")
    return {sample.name for family in registry.collect() for sample in family.samples}


def _plan() -> Plan:
    return resolve(load(ROOT / "examples/ridehail/corral.yaml"), python=sys.executable)


def _dashboard_queries(plan: Plan) -> list[str]:
    files = render(plan, [Target.GRAFANA]).files
    dashboard = json.loads(files[f"grafana/dashboards/{plan.system}.json"])
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["query"] for v in dashboard["templating"]["list"]]
    return queries


def test_dashboard_queries_only_metrics_the_sdk_exports() -> None:
    """Each metric a panel or variable selects is one the SDK exports (or ``up``)."""
    known = _sdk_metric_names() | {"up"}
    queries = _dashboard_queries(_plan())
    used = {name for q in queries for name in _SELECTOR.findall(q)}
    assert used, "no metric found in the dashboard's queries"
    assert used <= known, f"not exported by the SDK: {sorted(used - known)}"
    for required in ("http_requests_total", "corral_client_retries_total"):
        assert required in used


def test_alert_rules_query_only_known_metrics() -> None:
    """The alert rules use the SDK's metrics, ``up`` and the NATS exporter's DLQ gauge."""
    known = _sdk_metric_names() | {"up"} | NATS_EXPORTER
    rules = alert_rules(_plan())["groups"][0]["rules"]
    used = {name for rule in rules for name in _SELECTOR.findall(rule["expr"])}
    assert used <= known, f"unknown metrics: {sorted(used - known)}"
    assert {r["alert"] for r in rules} >= {
        "CorralInstanceDown",
        "CorralHighErrorRate",
        "CorralHighLatencyP99",
        "CorralDeadLettersWaiting",
    }


def test_metric_check_sees_a_renamed_metric() -> None:
    """The check above can fail: a query of a metric the SDK does not export is caught."""
    used = set(_SELECTOR.findall('rate(http_requests_count{system="x"}[5m])'))
    assert used - _sdk_metric_names() == {"http_requests_count"}
