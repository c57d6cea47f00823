"""Corral's own parts on Kubernetes: the Envoy gateway (its config in a ConfigMap) and
a single-node NATS JetStream StatefulSet with the Prometheus exporter beside it. Pure."""

from __future__ import annotations

from typing import Any

from corral.export._environment import (
    GATEWAY_HOST,
    NATS_HOST,
)
from corral.export._gateway import CONFIG_DIR, gateway_args, jwks_documents, render_gateway
from corral.export._k8s_objects import (
    checksum,
    claim_spec,
    container_security,
    grace_period,
    instances_service,
    labels,
    metadata,
    pod_security,
    pre_stop,
    scrape_annotations,
    selector,
)
from corral.export._k8s_resources import GATEWAY, NATS, NATS_EXPORTER, container_resources
from corral.export._mapping import kubernetes_probe
from corral.export._model import (
    DATA_DIR,
    GATEWAY_PORT,
    GATEWAY_STATS_PORT,
    NATS_EXPORTER_PORT,
    NATS_MONITOR_PORT,
    NATS_PORT,
    ExportOptions,
    Sources,
)
from corral.export._nats import LIVENESS_PATH as NATS_LIVENESS
from corral.export._nats import READINESS_PATH as NATS_READINESS
from corral.export._nats import exporter_args, nats_args, render_nats_config
from corral.plan import CheckKind, CheckPlan, Plan

ENVOY_UID = 65532
"""The distroless Envoy image's ``nonroot`` user."""
NATS_UID = 1000
GATEWAY_STOP_SECONDS = 5.0
"""Envoy's own time to stop after SIGTERM (it closes its listeners at once)."""


def gateway_objects(plan: Plan, options: ExportOptions, sources: Sources) -> list[dict[str, Any]]:
    gateway = plan.gateway
    assert gateway is not None
    name = GATEWAY_HOST
    component = "gateway"
    meta = metadata(plan, options, name, component)
    config = render_gateway(
        plan, hosts={c.name: instances_service(c.name) for c in gateway.clusters}
    )
    jwks, _ = jwks_documents(plan, sources)
    data = {"envoy.json": config, **jwks}
    items = [{"key": "envoy.json", "path": "envoy.json"}] + [
        {"key": key, "path": f"jwks/{key}"} for key in sorted(jwks)
    ]
    ready = CheckPlan(
        kind=CheckKind.HTTP, path="/ready", period=2.0, timeout=1.0, failure_threshold=3
    )
    container = {
        "name": "envoy",
        "image": options.images.envoy,
        "imagePullPolicy": "IfNotPresent",
        "args": gateway_args(plan),
        "ports": [
            {"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"},
            {"name": "stats", "containerPort": GATEWAY_STATS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": kubernetes_probe(ready, port="stats"),
        "livenessProbe": kubernetes_probe(ready, port="stats"),
        # The edge (an Ingress, a Gateway, a load balancer) stops sending first.
        "lifecycle": pre_stop(),
        "resources": container_resources(GATEWAY),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the admin socket
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                # One replica: the manifest's rate limits are per Envoy (local buckets).
                "replicas": 1,
                "selector": {"matchLabels": selector(plan, name)},
                "template": {
                    "metadata": {
                        "labels": labels(plan, name, component),
                        "annotations": {
                            "corral.dev/config-checksum": checksum(*data.values()),
                            **scrape_annotations(GATEWAY_STATS_PORT, "/stats/prometheus"),
                        },
                    },
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": pod_security(ENVOY_UID),
                        "terminationGracePeriodSeconds": grace_period(GATEWAY_STOP_SECONDS),
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": name, "items": items}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": selector(plan, name),
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    # Envoy's stats, for a ServiceMonitor (see _k8s_monitoring.py).
                    *(
                        [
                            {
                                "name": "stats",
                                "port": GATEWAY_STATS_PORT,
                                "targetPort": "stats",
                                "protocol": "TCP",
                            }
                        ]
                        if options.servicemonitor
                        else []
                    ),
                ],
            },
        },
    ]


def nats_objects(plan: Plan, options: ExportOptions) -> list[dict[str, Any]]:
    name = NATS_HOST
    component = "broker"
    meta = metadata(plan, options, name, component)
    config = render_nats_config(plan)
    ready = CheckPlan(
        kind=CheckKind.HTTP, path=NATS_READINESS, period=2.0, timeout=1.0, failure_threshold=3
    )
    alive = CheckPlan(
        kind=CheckKind.HTTP, path=NATS_LIVENESS, period=5.0, timeout=1.0, failure_threshold=3
    )
    nats = {
        "name": "nats",
        "image": options.images.nats,
        "imagePullPolicy": "IfNotPresent",
        "args": nats_args(),
        "ports": [
            {"name": "client", "containerPort": NATS_PORT, "protocol": "TCP"},
            {"name": "monitor", "containerPort": NATS_MONITOR_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": kubernetes_probe(ready, port="monitor"),
        "livenessProbe": kubernetes_probe(alive, port="monitor"),
        "resources": container_resources(NATS),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/nats", "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    }
    exporter = {
        "name": "exporter",
        "image": options.images.nats_exporter,
        "imagePullPolicy": "IfNotPresent",
        "args": exporter_args(f"http://127.0.0.1:{NATS_MONITOR_PORT}"),
        "ports": [{"name": "metrics", "containerPort": NATS_EXPORTER_PORT, "protocol": "TCP"}],
        "resources": container_resources(NATS_EXPORTER),
        "securityContext": container_security(),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"nats-server.conf": config},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "clusterIP": "None",
                "selector": selector(plan, name),
                "ports": [
                    {
                        "name": "client",
                        "port": NATS_PORT,
                        "targetPort": "client",
                        "protocol": "TCP",
                    },
                    {
                        "name": "monitor",
                        "port": NATS_MONITOR_PORT,
                        "targetPort": "monitor",
                        "protocol": "TCP",
                    },
                    # The exporter's metrics, for a ServiceMonitor (see _k8s_monitoring.py).
                    *(
                        [
                            {
                                "name": "metrics",
                                "port": NATS_EXPORTER_PORT,
                                "targetPort": "metrics",
                                "protocol": "TCP",
                            }
                        ]
                        if options.servicemonitor
                        else []
                    ),
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "selector": {"matchLabels": selector(plan, name)},
                "template": {
                    "metadata": {
                        "labels": labels(plan, name, component),
                        "annotations": {
                            "corral.dev/config-checksum": checksum(config),
                            **scrape_annotations(NATS_EXPORTER_PORT, "/metrics"),
                        },
                    },
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": pod_security(NATS_UID),
                        "terminationGracePeriodSeconds": 30,
                        "containers": [nats, exporter],
                        "volumes": [{"name": "config", "configMap": {"name": name}}],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": labels(plan, name, component)},
                        "spec": claim_spec(options),
                    }
                ],
            },
        },
    ]
