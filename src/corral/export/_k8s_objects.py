"""Small builders every Kubernetes object of the export shares: names, labels, metadata,
security contexts, disruption budgets, volume claims. Pure."""

from __future__ import annotations

import hashlib
from typing import Any

from corral.export._mapping import whole_seconds
from corral.export._model import ExportOptions
from corral.plan import Plan

MANAGED_BY = "corral"

PRESTOP_SECONDS = 5
"""How long a pod keeps serving after Kubernetes starts to delete it, before SIGTERM.

Deleting a pod and taking it out of its Services' endpoints happen at the same time, and
the endpoints' removal needs a moment to reach every kube-proxy (what ``svc.client``'s
calls to ``http://<service>`` go through) and, through DNS, the gateway's Envoy (which
re-resolves each service's headless name every 5 s): a process that stopped accepting at
once would see connections refused. The container's ``preStop`` sleeps this long (the
kubelet's own ``sleep`` action: no shell or ``sleep`` binary needed in the image,
Kubernetes 1.30 or later); SIGTERM comes after, and the SDK then drains as under
``corral up`` (``/readyz`` answers 503, in-flight requests finish). The grace period
counts the sleep too, so :func:`grace_period` adds it."""


def instances_service(service: str) -> str:
    """The headless Service the gateway resolves: one address per ready pod."""
    return f"{service}-instances"


def database_secret(service: str) -> str:
    return f"{service}-database"


def secrets_secret(service: str) -> str:
    """The Secret the operator creates with one key per variable of ``secrets:``."""
    return f"{service}-secrets"


def selector(plan: Plan, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": plan.system}


def labels(plan: Plan, name: str, component: str) -> dict[str, str]:
    return {
        **selector(plan, name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def metadata(plan: Plan, options: ExportOptions, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": options.namespace_of(plan.system),
        "labels": labels(plan, name, component),
    }


def checksum(*texts: str) -> str:
    """Changes when a mounted config changes, so ``kubectl apply`` rolls the pods."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def scrape_annotations(port: int, path: str) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": path,
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def disruption_budget(
    plan: Plan, options: ExportOptions, name: str, component: str
) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(plan, options, name, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(plan, name)}},
    }


def volume_claim(plan: Plan, options: ExportOptions, name: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(plan, options, name, component),
        "spec": claim_spec(options),
    }


def claim_spec(options: ExportOptions) -> dict[str, Any]:
    return {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": options.volume_size}},
    }


def pre_stop() -> dict[str, Any]:
    """The container's ``lifecycle`` (see :data:`PRESTOP_SECONDS`)."""
    return {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}}


def grace_period(stop_grace_period: float) -> int:
    """``terminationGracePeriodSeconds``: the preStop sleep, then the whole grace the
    process is promised after SIGTERM (its CORRAL_STOP_GRACE_PERIOD)."""
    return PRESTOP_SECONDS + whole_seconds(stop_grace_period)
