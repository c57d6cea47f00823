"""Prometheus: scrape configs for the Compose and Kubernetes exports, and alert rules. Pure.

Every target gets ``system`` and ``service`` labels, so the rules and the Grafana
dashboard read the same on both platforms. Compose finds every replica through Docker's
DNS (``dns_sd_configs``, one A record per container); Kubernetes through the pods' own
``prometheus.io/*`` annotations in the system's namespace. The rules use the SDK's metric
names (``corral.sdk._metrics``, ``corral.sdk.client._telemetry``; a test fails when one is
renamed) and, for dead letters, the NATS exporter's ``jetstream_stream_total_messages`` of
the ``<system>_DLQ`` stream.
"""

from __future__ import annotations

from typing import Any

from corral.export._environment import GATEWAY_HOST, runs_nats
from corral.export._k8s_objects import MANAGED_BY
from corral.export._model import (
    CONTAINER_PORT,
    GATEWAY_STATS_PORT,
    NATS_EXPORTER_PORT,
    Export,
    ExportOptions,
)
from corral.export._text import HEADER, to_yaml
from corral.plan import Plan
from corral.sdk.events.wire import dlq_stream

RULES_FILE = "alerts.yml"
ERROR_RATIO = 0.05
P99_SECONDS = 1.0


def _system_label(plan: Plan) -> dict[str, Any]:
    return {"target_label": "system", "replacement": plan.system}


def compose_config(plan: Plan) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "corral-services",
            "dns_sd_configs": [
                {"names": sorted(plan.services), "type": "A", "port": CONTAINER_PORT}
            ],
            "relabel_configs": [
                {"source_labels": ["__meta_dns_name"], "target_label": "service"},
                _system_label(plan),
            ],
        }
    ]
    if plan.gateway is not None:
        jobs.append(
            {
                "job_name": "corral-gateway",
                "metrics_path": "/stats/prometheus",
                "static_configs": [
                    {
                        "targets": [f"{GATEWAY_HOST}:{GATEWAY_STATS_PORT}"],
                        "labels": {"service": GATEWAY_HOST, "system": plan.system},
                    }
                ],
            }
        )
    if runs_nats(plan):
        jobs.append(
            {
                "job_name": "corral-nats",
                "static_configs": [
                    {
                        "targets": [f"corral-nats-exporter:{NATS_EXPORTER_PORT}"],
                        "labels": {"service": "corral-nats", "system": plan.system},
                    }
                ],
            }
        )
    return _config(jobs)


def kubernetes_config(plan: Plan, options: ExportOptions) -> dict[str, Any]:
    pod = "__meta_kubernetes_pod_"
    job = {
        "job_name": "corral-pods",
        "kubernetes_sd_configs": [
            {"role": "pod", "namespaces": {"names": [options.namespace_of(plan.system)]}}
        ],
        "relabel_configs": [
            {
                "source_labels": [
                    f"{pod}label_app_kubernetes_io_part_of",
                    f"{pod}label_app_kubernetes_io_managed_by",
                    f"{pod}annotation_prometheus_io_scrape",
                ],
                "regex": f"{plan.system};{MANAGED_BY};true",
                "action": "keep",
            },
            {
                "source_labels": [f"{pod}annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__address__", f"{pod}annotation_prometheus_io_port"],
                "regex": "([^:]+)(?::\\d+)?;(\\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {"source_labels": [f"{pod}label_app_kubernetes_io_name"], "target_label": "service"},
            {"source_labels": [f"{pod}name"], "target_label": "pod"},
            _system_label(plan),
        ],
    }
    return _config([job])


def _config(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [RULES_FILE],
        "scrape_configs": jobs,
    }


def alert_rules(plan: Plan) -> dict[str, Any]:
    system = f'system="{plan.system}"'
    window = "5m"
    rules: list[dict[str, Any]] = [
        {
            "alert": "CorralInstanceDown",
            "expr": f"up{{{system}}} == 0",
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.service }} instance {{ $labels.instance }} is down",
            },
        },
        {
            "alert": "CorralHighErrorRate",
            "expr": (
                f'sum by (service) (rate(http_requests_total{{{system},status=~"5.."}}[{window}]))'
                f" / sum by (service) (rate(http_requests_total{{{system}}}[{window}]))"
                f" > {ERROR_RATIO:g}"
            ),
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.service }} answers more than "
                f"{ERROR_RATIO:.0%} of requests with a 5xx",
            },
        },
        {
            "alert": "CorralHighLatencyP99",
            "expr": (
                "histogram_quantile(0.99, sum by (service, le) "
                f"(rate(http_request_duration_seconds_bucket{{{system}}}[{window}])))"
                f" > {P99_SECONDS:g}"
            ),
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{{{{ $labels.service }}}} p99 latency is above {P99_SECONDS:g}s",
            },
        },
        {
            "alert": "CorralCircuitOpen",
            "expr": f"max by (service, target) (corral_client_circuit_state{{{system}}}) == 2",
            "for": "1m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.service }} has its circuit to {{ $labels.target }} open",
            },
        },
    ]
    if plan.events is not None:
        stream = dlq_stream(plan.system)
        rules.append(
            {
                "alert": "CorralDeadLettersWaiting",
                "expr": f'max(jetstream_stream_total_messages{{stream_name="{stream}"}}) > 0',
                "for": "5m",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "{{ $value }} dead letters wait in " + stream,
                    "description": "See them with `corral events dlq list`; replay once fixed.",
                },
            }
        )
    return {"groups": [{"name": f"corral-{plan.system}", "rules": rules}]}


def render_prometheus(plan: Plan, options: ExportOptions) -> Export:
    comment = HEADER.format(source=options.source)
    files = {
        "prometheus/compose.yml": to_yaml(
            [compose_config(plan)],
            comment=comment + "\nFor the Compose export: run Prometheus on its network.",
        ),
        "prometheus/kubernetes.yml": to_yaml(
            [kubernetes_config(plan, options)],
            comment=comment + "\nFor the Kubernetes export: Prometheus needs RBAC to list pods.",
        ),
        f"prometheus/{RULES_FILE}": to_yaml([alert_rules(plan)], comment=comment),
    }
    return Export(files)
