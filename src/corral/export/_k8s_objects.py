"""Small builders every Kubernetes object of the export shares: names, labels, metadata,
security contexts, disruption budgets, volume claims. Pure."""

from __future__ import annotations

import hashlib
from typing import Any

from corral.export._model import ExportOptions
from corral.plan import Plan

MANAGED_BY = "corral"


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
