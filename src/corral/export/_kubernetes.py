"""Kubernetes: a namespace, every service, the gateway and NATS as plain manifests. Pure.

Per service: a ConfigMap with the runtime contract's environment, a Deployment (replicas,
probes from the manifest's checks, requests/limits, non-root with a read-only root
filesystem, the grace period), a Service (port 80, what ``CORRAL_DISCOVERY=dns`` calls),
a headless ``<service>-instances`` Service when the gateway routes to it (Envoy resolves
every ready pod and balances across them itself), a PodDisruptionBudget above one
replica, and a PersistentVolumeClaim for a SQLite file. ``network-policies.yaml`` denies
every connection the manifest does not declare (see ``_k8s_network.py``). Optional:
``servicemonitors.yaml`` (``--servicemonitor``), ``httproutes.yaml`` (``--gateway-api``).
An ``autoscale:`` policy becomes an HPA in the service's file, or for consumer lag a KEDA
ScaledObject in ``scaledobjects.yaml`` (``_k8s_autoscale.py``).
Every container has requests and a memory limit, and services and the gateway sleep
before SIGTERM (``_k8s_resources.py``, ``_k8s_objects.py``). ``postgres`` services read
DATABASE_URL from a Secret ``<service>-database`` (key ``url``) that the operator
creates: the export never writes a credential. A ``kustomization.yaml`` lists everything:
the hook for per-environment overlays (``kubectl apply -k``).

SQLite with more than one replica is refused: each pod would get its own volume and so
its own file (the replicas would disagree about the data), and a volume shared between
nodes (NFS) breaks SQLite's locking. Use ``database: postgres`` or one replica (which is
then stopped before its replacement starts: strategy Recreate, one writer at a time).
"""

from __future__ import annotations

from typing import Any

from corral.export._environment import GATEWAY_HOST, NATS_HOST, runs_nats
from corral.export._gateway import jwks_documents
from corral.export._k8s_autoscale import autoscale_objects
from corral.export._k8s_components import gateway_objects, nats_objects
from corral.export._k8s_gateway_api import http_routes, path_problems
from corral.export._k8s_monitoring import service_monitors
from corral.export._k8s_network import network_policies
from corral.export._k8s_objects import MANAGED_BY
from corral.export._k8s_services import check_kubernetes, service_objects
from corral.export._model import (
    Export,
    ExportError,
    ExportOptions,
    Note,
    Problem,
    Sources,
    Target,
)
from corral.export._text import HEADER, to_yaml
from corral.plan import Plan


def render_kubernetes(
    plan: Plan, options: ExportOptions, sources: Sources, *, monitored: bool = False
) -> Export:
    """Every file of ``kubernetes/``; ``monitored``: the Prometheus target is exported too
    (its scrape is then let through the network policies)."""
    problems = check_kubernetes(plan)
    if plan.gateway is not None:
        problems += jwks_documents(plan, sources)[1]
        problems += path_problems(plan) if options.gateway_api is not None else []
    elif options.gateway_api is not None:
        problems.append(
            Problem(
                (),
                f"--gateway-api {options.gateway_api}: the manifest has no gateway to attach",
                "add a gateway: section with routes, or leave --gateway-api out",
            )
        )
    if problems:
        raise ExportError(Target.KUBERNETES, problems)
    notes: list[Note] = []
    namespace = options.namespace_of(plan.system)
    comment = HEADER.format(source=options.source)
    files: dict[str, str] = {
        "kubernetes/namespace.yaml": to_yaml(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": namespace,
                        "labels": {
                            "app.kubernetes.io/part-of": plan.system,
                            "app.kubernetes.io/managed-by": MANAGED_BY,
                        },
                    },
                }
            ],
            comment=comment,
        )
    }
    scaled_objects: list[dict[str, Any]] = []
    for name in sorted(plan.services):
        objects = service_objects(plan, plan.services[name], options, notes)
        for scaler in autoscale_objects(plan, plan.services[name], options, notes):
            (scaled_objects if scaler["kind"] == "ScaledObject" else objects).append(scaler)
        files[f"kubernetes/{name}.yaml"] = to_yaml(objects, comment=comment)
    if scaled_objects:
        files["kubernetes/scaledobjects.yaml"] = to_yaml(
            scaled_objects, comment=comment + "\nNeeds KEDA's CRDs (keda.sh/v1alpha1)."
        )
    if plan.gateway is not None:
        files[f"kubernetes/{GATEWAY_HOST}.yaml"] = to_yaml(
            gateway_objects(plan, options, sources), comment=comment
        )
    if runs_nats(plan):
        files[f"kubernetes/{NATS_HOST}.yaml"] = to_yaml(
            nats_objects(plan, options), comment=comment
        )
    files["kubernetes/network-policies.yaml"] = to_yaml(
        network_policies(plan, options, scraped=monitored or options.servicemonitor),
        comment=comment,
    )
    if options.servicemonitor:
        files["kubernetes/servicemonitors.yaml"] = to_yaml(
            service_monitors(plan, options),
            comment=comment + "\nNeeds the Prometheus Operator's CRDs (monitoring.coreos.com/v1).",
        )
    if options.gateway_api is not None and plan.gateway is not None:
        files["kubernetes/httproutes.yaml"] = to_yaml(
            http_routes(plan, options, notes),
            comment=comment + "\nNeeds the Gateway API's CRDs (gateway.networking.k8s.io/v1, "
            "standard channel).",
        )
    resources = [
        "namespace.yaml",
        *sorted(p.removeprefix("kubernetes/") for p in files if not p.endswith("namespace.yaml")),
    ]
    files["kubernetes/kustomization.yaml"] = to_yaml(
        [
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": resources,
            }
        ],
        comment=comment + "\nOverlays per environment: a kustomization.yaml elsewhere that lists "
        "this folder as a resource.",
    )
    return Export(dict(sorted(files.items())), tuple(notes))
