"""A service as Kubernetes objects (see ``_kubernetes.py`` for what and why). Pure."""

from __future__ import annotations

import re
from typing import Any

from corral import contract
from corral.export._docker import container_command
from corral.export._environment import (
    container_environment,
    sqlite_url,
)
from corral.export._k8s_monitoring import HEADLESS_LABEL
from corral.export._k8s_objects import (
    checksum,
    container_security,
    database_secret,
    disruption_budget,
    grace_period,
    instances_service,
    labels,
    metadata,
    pod_security,
    pre_stop,
    scrape_annotations,
    secrets_secret,
    selector,
    volume_claim,
)
from corral.export._k8s_resources import service_resources
from corral.export._mapping import kubernetes_probe
from corral.export._model import (
    CONTAINER_PORT,
    DATA_DIR,
    SERVICE_UID,
    ExportOptions,
    Note,
    Problem,
)
from corral.manifest import DatabaseEngine, RestartPolicy
from corral.plan import CheckPlan, Plan, ServicePlan

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _probes(
    readiness: CheckPlan | None, liveness: CheckPlan | None, startup: CheckPlan | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, check in (
        ("readinessProbe", readiness),
        ("livenessProbe", liveness),
        ("startupProbe", startup),
    ):
        if check is not None:
            out[key] = kubernetes_probe(check)
    return out


def _user_labels(service: ServicePlan, notes: list[Note]) -> dict[str, str]:
    out = {}
    for key, value in service.labels.items():
        if (
            _LABEL_KEY.match(key)
            and _LABEL_VALUE.match(value)
            and not key.startswith("app.kubernetes.io/")
        ):
            out[key] = value
        else:
            notes.append(
                Note(
                    ("services", service.name, "labels", key),
                    "not a valid Kubernetes label; left out",
                )
            )
    return out


def service_objects(
    plan: Plan, service: ServicePlan, options: ExportOptions, notes: list[Note]
) -> list[dict[str, Any]]:
    name = service.name
    component = "service"
    meta = metadata(plan, options, name, component)
    sqlite = service.database.engine is DatabaseEngine.SQLITE
    env = container_environment(
        plan, service, discovery="dns", database_url=sqlite_url(service) if sqlite else None
    )
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "name": f"{name}-env"},
        "data": env,
    }
    variables: list[dict[str, Any]] = [
        {"name": contract.INSTANCE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    if service.database.engine is DatabaseEngine.POSTGRES and contract.DATABASE_URL not in env:
        variables.append(
            {
                "name": contract.DATABASE_URL,
                "valueFrom": {"secretKeyRef": {"name": database_secret(name), "key": "url"}},
            }
        )
    # The manifest's secrets are references only: each variable comes from a key of a
    # Secret the operator creates (the export never writes a credential).
    for variable in sorted(service.secrets):
        variables.append(
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": secrets_secret(name), "key": variable}},
            }
        )
    if service.secrets:
        notes.append(
            Note(
                ("services", name, "secrets"),
                f"create Secret {secrets_secret(name)} with the keys "
                f"{', '.join(sorted(service.secrets))} before applying",
            )
        )
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir of its own
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if sqlite:
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data"}})
    container: dict[str, Any] = {
        "name": name,
        "image": options.image(plan.system, name),
        "imagePullPolicy": "IfNotPresent",
        "command": container_command(service),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": f"{name}-env"}}],
        "env": variables,
        **_probes(service.readiness, service.liveness, service.startup),
        "lifecycle": pre_stop(),
        "resources": service_resources(service, notes),
        "securityContext": container_security(),
    }
    container["volumeMounts"] = mounts
    if service.restart.policy is not RestartPolicy.ALWAYS:
        notes.append(
            Note(
                ("services", name, "restart"),
                f"a Deployment restarts its pods always; restart: {service.restart.policy} "
                "cannot be expressed and is exported as Always",
            )
        )
    pod_labels = {**labels(plan, name, component), **_user_labels(service, notes)}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            # An autoscaled Deployment leaves its count to the HPA: a replicas field
            # here would reset it on every `kubectl apply`.
            **({} if service.autoscale is not None else {"replicas": service.replicas}),
            "selector": {"matchLabels": selector(plan, name)},
            # One SQLite writer at a time: the old pod stops before the new one starts.
            "strategy": {"type": "Recreate"}
            if sqlite
            else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "corral.dev/config-checksum": checksum(*env.values()),
                        **scrape_annotations(CONTAINER_PORT, contract.METRICS_PATH),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(SERVICE_UID),
                    "terminationGracePeriodSeconds": grace_period(service.stop_grace_period),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    objects: list[dict[str, Any]] = [config_map, deployment]
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": selector(plan, name),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    if plan.gateway is not None and name in {c.name for c in plan.gateway.clusters}:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    **meta,
                    "name": instances_service(name),
                    "labels": {**meta["labels"], HEADLESS_LABEL: "true"},
                },
                "spec": {
                    "clusterIP": "None",
                    "selector": selector(plan, name),
                    "ports": [
                        {
                            "name": "http",
                            "port": CONTAINER_PORT,
                            "targetPort": "http",
                            "protocol": "TCP",
                        }
                    ],
                },
            }
        )
    if service.replicas > 1:
        objects.append(disruption_budget(plan, options, name, component))
    if sqlite:
        objects.append(volume_claim(plan, options, f"{name}-data", component))
    return objects


def check_kubernetes(plan: Plan) -> list[Problem]:
    """Manifests this target refuses (see the module docstring)."""
    return [
        Problem(
            ("services", name, "replicas"),
            f"{name} keeps its data in SQLite and has {service.replicas} replicas: on "
            "Kubernetes each pod would get its own file",
            "use database: postgres, database: none if it keeps no data, or replicas: 1",
        )
        for name, service in sorted(plan.services.items())
        if service.database.engine is DatabaseEngine.SQLITE and service.replicas > 1
    ] + [
        Problem(
            ("services", name, "autoscale", "max"),
            f"{name} keeps its data in SQLite and may autoscale to {service.autoscale.max} "
            "replicas: on Kubernetes each pod would get its own file",
            "use database: postgres, database: none if it keeps no data, or autoscale max 1",
        )
        for name, service in sorted(plan.services.items())
        if service.database.engine is DatabaseEngine.SQLITE
        and service.autoscale is not None
        and service.autoscale.max > 1
    ]
