"""Grafana: one dashboard per system (RED per service, client retries and circuit states)
and the provisioning that loads it with a Prometheus data source. Pure.

Every query reads the SDK's metric names (``http_requests_total``,
``http_request_duration_seconds``, ``http_requests_in_flight``, ``corral_client_*``) with
the ``system`` and ``service`` labels the Prometheus export gives each target.
"""

from __future__ import annotations

from typing import Any

from corral.export._model import Export, ExportOptions
from corral.export._text import HEADER, to_json, to_yaml
from corral.plan import Plan

DATASOURCE_UID = "corral-prometheus"
DASHBOARDS_DIR = "/var/lib/grafana/dashboards/corral"
_DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}


def _panel(
    title: str,
    exprs: list[tuple[str, str]],
    *,
    unit: str,
    position: tuple[int, int],
    width: int = 12,
    mappings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    x, y = position
    defaults: dict[str, Any] = {"unit": unit}
    if mappings:
        defaults["mappings"] = mappings
    return {
        "type": "timeseries",
        "title": title,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "expr": expr,
                "legendFormat": legend,
                "datasource": _DATASOURCE,
            }
            for index, (expr, legend) in enumerate(exprs)
        ],
    }


def queries(plan: Plan) -> dict[str, list[tuple[str, str]]]:
    """Panel title -> (PromQL, legend) pairs; what the dashboard shows."""
    sel = f'system="{plan.system}",service=~"$service"'
    rate = "[$__rate_interval]"
    requests = f"rate(http_requests_total{{{sel}}}{rate})"
    buckets = f"rate(http_request_duration_seconds_bucket{{{sel}}}{rate})"
    return {
        "Requests per second": [(f"sum by (service) ({requests})", "{{service}}")],
        "Errors (5xx share)": [
            (
                f'sum by (service) (rate(http_requests_total{{{sel},status=~"5.."}}{rate}))'
                f" / sum by (service) ({requests})",
                "{{service}}",
            )
        ],
        "Latency p50 and p99": [
            (f"histogram_quantile(0.5, sum by (service, le) ({buckets}))", "{{service}} p50"),
            (f"histogram_quantile(0.99, sum by (service, le) ({buckets}))", "{{service}} p99"),
        ],
        "In flight and instances up": [
            (f"sum by (service) (http_requests_in_flight{{{sel}}})", "{{service}} in flight"),
            (f"sum by (service) (up{{{sel}}})", "{{service}} up"),
        ],
        "Client calls by outcome": [
            (
                "sum by (service, target, outcome) "
                f"(rate(corral_client_calls_total{{{sel}}}{rate}))",
                "{{service}} → {{target}} {{outcome}}",
            )
        ],
        "Client retries and spent retry budget": [
            (
                f"sum by (service, target) (rate(corral_client_retries_total{{{sel}}}{rate}))",
                "{{service}} → {{target}} retries",
            ),
            (
                "sum by (service, target) "
                f"(rate(corral_client_retry_budget_exhausted_total{{{sel}}}{rate}))",
                "{{service}} → {{target}} budget spent",
            ),
        ],
        "Circuit breakers (0 closed, 1 half-open, 2 open)": [
            (
                f"max by (service, target) (corral_client_circuit_state{{{sel}}})",
                "{{service}} → {{target}}",
            )
        ],
        "Bulkhead rejections and fallbacks": [
            (
                "sum by (service, target) "
                f"(rate(corral_client_bulkhead_rejections_total{{{sel}}}{rate}))",
                "{{service}} → {{target}} rejected",
            ),
            (
                f"sum by (service, target) (rate(corral_client_fallbacks_total{{{sel}}}{rate}))",
                "{{service}} → {{target}} fallback",
            ),
        ],
    }


_UNITS = {
    "Requests per second": "reqps",
    "Errors (5xx share)": "percentunit",
    "Latency p50 and p99": "s",
    "In flight and instances up": "short",
    "Circuit breakers (0 closed, 1 half-open, 2 open)": "short",
}
_CIRCUIT = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green"},
            "1": {"text": "half-open", "color": "yellow"},
            "2": {"text": "open", "color": "red"},
        },
    }
]


def dashboard(plan: Plan) -> dict[str, Any]:
    panels = []
    for index, (title, exprs) in enumerate(queries(plan).items()):
        panel = _panel(
            title,
            exprs,
            unit=_UNITS.get(title, "ops"),
            position=((index % 2) * 12, (index // 2) * 8),
            mappings=_CIRCUIT if title.startswith("Circuit") else None,
        )
        panel["id"] = index + 1
        panels.append(panel)
    return {
        "uid": f"corral-{plan.system}"[:40],
        "title": f"{plan.system} (Corral)",
        "tags": ["corral", plan.system],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "service",
                    "label": "service",
                    "type": "query",
                    "datasource": _DATASOURCE,
                    "query": f'label_values(up{{system="{plan.system}"}}, service)',
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "current": {"text": "All", "value": "$__all"},
                    "allValue": ".*",
                    "sort": 1,
                }
            ]
        },
        "panels": panels,
    }


def render_grafana(plan: Plan, options: ExportOptions) -> Export:
    comment = HEADER.format(source=options.source)
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Corral Prometheus",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
                "editable": False,
            }
        ],
    }
    providers = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "corral",
                "folder": "Corral",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": DASHBOARDS_DIR},
            }
        ],
    }
    return Export(
        {
            f"grafana/dashboards/{plan.system}.json": to_json(dashboard(plan)),
            "grafana/provisioning/dashboards/corral.yaml": to_yaml([providers], comment=comment),
            "grafana/provisioning/datasources/corral.yaml": to_yaml(
                [datasources],
                comment=comment + "\nPoint url at your Prometheus.",
            ),
        }
    )
