"""A service's ``autoscale:`` policy on Kubernetes. Pure.

- CPU: a HorizontalPodAutoscaler (autoscaling/v2) on the pods' CPU, as an average value
  per pod (``700m``), so it needs no CPU request to be a percentage of.
- In-flight requests and p95 latency: an HPA on a per-pod custom metric,
  ``http_requests_in_flight`` (the SDK's gauge) or ``corral_request_duration_p95_seconds``;
  a Prometheus adapter must serve them (rules in docs/autoscale.md), said in a note.
- Consumer lag: a KEDA ScaledObject with the ``nats-jetstream`` scaler, one trigger per
  durable consumer of the service on the topic (one per partition of an ordered topic),
  reading the exported NATS server's monitoring port. KEDA makes the HPA itself.

The stabilization windows map to the HPA's ``behavior``; the cooldowns have no HPA
equivalent (the HPA's policies limit rates instead): said in the object's annotations.
The HPA's ``minReplicas`` is at least 1 (0 needs an alpha feature gate); KEDA scales to 0.
"""

from __future__ import annotations

from typing import Any

from corral.export._environment import NATS_HOST
from corral.export._k8s_objects import metadata
from corral.export._model import NATS_MONITOR_PORT, ExportOptions, Note
from corral.plan import AutoscalePlan, Plan, ServicePlan
from corral.sdk.events.wire import stream_name

__all__ = ["P95_METRIC", "autoscale_objects"]

IN_FLIGHT_METRIC = "http_requests_in_flight"
P95_METRIC = "corral_request_duration_p95_seconds"
_COOLDOWN = "corral.dev/cooldown"


def autoscale_objects(
    plan: Plan, service: ServicePlan, options: ExportOptions, notes: list[Note]
) -> list[dict[str, Any]]:
    """The HPA or ScaledObject of ``service`` (none without a policy)."""
    policy = service.autoscale
    if policy is None:
        return []
    meta = metadata(plan, options, service.name, "service")
    meta["annotations"] = {
        _COOLDOWN: f"up {policy.up_cooldown:g}s, down {policy.down_cooldown:g}s "
        "(corral up only; the HPA limits rates instead)"
    }
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name}
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": round(policy.up_stabilization)},
        "scaleDown": {"stabilizationWindowSeconds": round(policy.down_stabilization)},
    }
    if policy.metric == "lag":
        notes.append(
            Note(
                ("services", service.name, "autoscale"),
                f"{service.name} scales with KEDA (scaledobjects.yaml): KEDA's operator must "
                f"reach {NATS_HOST}:{NATS_MONITOR_PORT}, which network-policies.yaml denies; "
                "allow it from KEDA's namespace",
            )
        )
        return [_scaled_object(plan, service, policy, options, meta, target, behavior)]
    if policy.metric != "cpu":
        metric = IN_FLIGHT_METRIC if policy.metric == "in_flight" else P95_METRIC
        notes.append(
            Note(
                ("services", service.name, "autoscale"),
                f"the HPA of {service.name} reads the pods metric {metric}: install a "
                "Prometheus adapter serving it (docs/autoscale.md)",
            )
        )
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": target,
                "minReplicas": max(policy.min, 1),
                "maxReplicas": policy.max,
                "metrics": [_metric(policy)],
                "behavior": behavior,
            },
        }
    ]


def _metric(policy: AutoscalePlan) -> dict[str, Any]:
    if policy.metric == "cpu":
        return {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "AverageValue", "averageValue": _quantity(policy.target)},
            },
        }
    name = IN_FLIGHT_METRIC if policy.metric == "in_flight" else P95_METRIC
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": _quantity(policy.target)},
        },
    }


def _scaled_object(
    plan: Plan,
    service: ServicePlan,
    policy: AutoscalePlan,
    options: ExportOptions,
    meta: dict[str, Any],
    target: dict[str, Any],
    behavior: dict[str, Any],
) -> dict[str, Any]:
    assert policy.topic is not None  # the manifest guarantees it for lag
    topic = next(t for t in plan.events.topics if t.name == policy.topic) if plan.events else None
    partitions = topic.partitions if topic is not None else 0
    consumers = (
        [f"{service.name}-p{i}" for i in range(partitions)] if partitions else [service.name]
    )
    namespace = options.namespace_of(plan.system)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"name": service.name},
            "minReplicaCount": policy.min,
            "maxReplicaCount": policy.max,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
            "triggers": [
                {
                    "type": "nats-jetstream",
                    "metadata": {
                        "natsServerMonitoringEndpoint": (
                            f"{NATS_HOST}.{namespace}.svc.cluster.local:{NATS_MONITOR_PORT}"
                        ),
                        "account": "$G",
                        "stream": stream_name(plan.system, policy.topic),
                        "consumer": consumer,
                        "lagThreshold": str(round(policy.target)),
                    },
                }
                for consumer in consumers
            ],
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as they are, fractions in milli-units."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"
