"""``autoscale:`` exported: an HPA (CPU, or a custom pods metric), a KEDA ScaledObject
for consumer lag, no replicas field for the HPA to fight, and Compose saying it has no
autoscaler. KEDA's CRD cannot be vendored here: its fields are checked by name."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from export_helpers import kubernetes_documents, render_case
from ruamel.yaml import YAML

from corral.export import ExportError, Sources, Target, render
from corral.manifest import parse
from corral.plan import resolve

# The ScaledObject spec's fields (keda.sh/v1alpha1) and a trigger's.
KEDA_SPEC = {
    "advanced",
    "cooldownPeriod",
    "fallback",
    "idleReplicaCount",
    "maxReplicaCount",
    "minReplicaCount",
    "pollingInterval",
    "scaleTargetRef",
    "triggers",
}
KEDA_TRIGGER = {"authenticationRef", "metadata", "name", "type", "metricType", "useCachedMetrics"}
NATS_JETSTREAM = {
    "natsServerMonitoringEndpoint",
    "account",
    "stream",
    "consumer",
    "lagThreshold",
    "activationLagThreshold",
    "useHttps",
}


def _plan(services: str) -> Any:
    text = f"name: demo\nservices:\n{services}"
    return resolve(parse(text, "/corral/demo/corral.yaml"), python=sys.executable)


def _kinds(export: Any, kind: str) -> list[dict[str, Any]]:
    return [d for d in kubernetes_documents(export) if d["kind"] == kind]


def test_lag_becomes_a_keda_scaled_object_per_partition_consumer() -> None:
    """One nats-jetstream trigger per durable consumer, string metadata, known fields."""
    export = render_case("full")
    (scaled,) = _kinds(export, "ScaledObject")
    spec = scaled["spec"]
    assert set(spec) <= KEDA_SPEC
    assert spec["scaleTargetRef"] == {"name": "orders"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    consumers = [t["metadata"]["consumer"] for t in spec["triggers"]]
    assert consumers == ["orders-p0", "orders-p1", "orders-p2", "orders-p3"]
    for trigger in spec["triggers"]:
        assert set(trigger) <= KEDA_TRIGGER
        assert trigger["type"] == "nats-jetstream"
        assert set(trigger["metadata"]) <= NATS_JETSTREAM
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        assert trigger["metadata"]["stream"] == "shop_stock_low"
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert not any(
        h["metadata"]["name"] == "orders" for h in _kinds(export, "HorizontalPodAutoscaler")
    )
    assert any("KEDA" in note.message for note in export.notes)


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler() -> None:
    """A replicas field would reset the HPA's count on every kubectl apply."""
    export = render_case("full")
    deployments = {d["metadata"]["name"]: d["spec"] for d in _kinds(export, "Deployment")}
    assert "replicas" not in deployments["orders"]
    assert "replicas" not in deployments["reports"]
    assert deployments["stock"]["replicas"] == 1


@pytest.mark.parametrize(
    ("target", "metric"),
    [
        (
            "{cpu: 700m}",
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "AverageValue", "averageValue": "700m"},
                },
            },
        ),
        (
            "{in_flight: 8}",
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "http_requests_in_flight"},
                    "target": {"type": "AverageValue", "averageValue": "8"},
                },
            },
        ),
        (
            "{p95: 250ms}",
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "corral_request_duration_p95_seconds"},
                    "target": {"type": "AverageValue", "averageValue": "250m"},
                },
            },
        ),
    ],
)
def test_other_targets_become_an_hpa(target: str, metric: dict[str, Any]) -> None:
    """CPU as an average value per pod; in-flight and p95 as custom pods metrics."""
    plan = _plan(
        f"  web: {{app: web:svc, database: none, autoscale: {{max: 5, target: {target}}}}}\n"
    )
    export = render(plan, [Target.KUBERNETES, Target.COMPOSE], sources=Sources())
    (hpa,) = _kinds(export, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"] == [metric]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    compose = export.files["compose/compose.yaml"]
    assert "No autoscaler in Compose or Swarm: the autoscale policies of web" in compose
    assert (
        YAML(typ="safe").load(compose)["services"]["web"].get("deploy", {}).get("replicas", 1) == 1
    )


def test_sqlite_that_may_scale_out_is_refused() -> None:
    """Autoscaling past one replica on SQLite: each pod would get its own file."""
    plan = _plan("  web: {app: web:svc, autoscale: {max: 3, target: {cpu: 1}}}\n")
    with pytest.raises(ExportError) as caught:
        render(plan, [Target.KUBERNETES], sources=Sources())
    (problem,) = caught.value.problems
    assert problem.path == ("services", "web", "autoscale", "max")
