"""Kubernetes: a namespace, every service, the gateway and NATS as plain manifests. Pure.

Per service: a ConfigMap with the runtime contract's environment, a Deployment (replicas,
probes from the manifest's checks, requests/limits, non-root with a read-only root
filesystem, the grace period), a Service (port 80, what ``CORRAL_DISCOVERY=dns`` calls),
a headless ``<service>-instances`` Service when the gateway routes to it (Envoy resolves
every ready pod and balances across them itself), a PodDisruptionBudget above one
replica, and a PersistentVolumeClaim for a SQLite file. ``postgres`` services read
DATABASE_URL from a Secret ``<service>-database`` (key ``url``) that the operator creates:
the export never writes a credential. A ``kustomization.yaml`` lists everything: the hook
for per-environment overlays (``kubectl apply -k``).

SQLite with more than one replica is refused: each pod would get its own volume and so
its own file (the replicas would disagree about the data), and a volume shared between
nodes (NFS) breaks SQLite's locking. Use ``database: postgres`` or one replica (which is
then stopped before its replacement starts: strategy Recreate, one writer at a time).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from corral import contract
from corral.export._docker import container_command
from corral.export._environment import (
    GATEWAY_HOST,
    NATS_HOST,
    container_environment,
    runs_nats,
    sqlite_url,
)
from corral.export._gateway import CONFIG_DIR, gateway_args, jwks_documents, render_gateway
from corral.export._mapping import cpu_quantity, kubernetes_probe, memory_quantity, whole_seconds
from corral.export._model import (
    CONTAINER_PORT,
    DATA_DIR,
    GATEWAY_PORT,
    GATEWAY_STATS_PORT,
    NATS_EXPORTER_PORT,
    NATS_MONITOR_PORT,
    NATS_PORT,
    SERVICE_UID,
    Export,
    ExportError,
    ExportOptions,
    Note,
    Problem,
    Sources,
    Target,
)
from corral.export._nats import LIVENESS_PATH as NATS_LIVENESS
from corral.export._nats import READINESS_PATH as NATS_READINESS
from corral.export._nats import exporter_args, nats_args, render_nats_config
from corral.export._text import HEADER, to_yaml
from corral.manifest import DatabaseEngine, RestartPolicy
from corral.plan import CheckKind, CheckPlan, Plan, ServicePlan

ENVOY_UID = 65532
"""The distroless Envoy image's ``nonroot`` user."""
NATS_UID = 1000
MANAGED_BY = "corral"
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def instances_service(service: str) -> str:
    """The headless Service the gateway resolves: one address per ready pod."""
    return f"{service}-instances"


def database_secret(service: str) -> str:
    return f"{service}-database"


def selector(plan: Plan, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": plan.system}


def labels(plan: Plan, name: str, component: str) -> dict[str, str]:
    return {
        **selector(plan, name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _metadata(plan: Plan, options: ExportOptions, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": options.namespace_of(plan.system),
        "labels": labels(plan, name, component),
    }


def _checksum(*texts: str) -> str:
    """Changes when a mounted config changes, so ``kubectl apply`` rolls the pods."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def _scrape(port: int, path: str) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": path,
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pdb(plan: Plan, options: ExportOptions, name: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(plan, options, name, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(plan, name)}},
    }


def _claim(plan: Plan, options: ExportOptions, name: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(plan, options, name, component),
        "spec": _claim_spec(options),
    }


def _claim_spec(options: ExportOptions) -> dict[str, Any]:
    return {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": options.volume_size}},
    }


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


def _service_objects(
    plan: Plan, service: ServicePlan, options: ExportOptions, notes: list[Note]
) -> list[dict[str, Any]]:
    name = service.name
    component = "service"
    meta = _metadata(plan, options, name, component)
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
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir of its own
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if sqlite:
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data"}})
    resources: dict[str, Any] = {}
    if service.cpu is not None:
        resources.setdefault("requests", {})["cpu"] = cpu_quantity(service.cpu)
    if service.memory is not None:
        resources.setdefault("requests", {})["memory"] = memory_quantity(service.memory)
        resources["limits"] = {"memory": memory_quantity(service.memory)}
    container: dict[str, Any] = {
        "name": name,
        "image": options.image(plan.system, name),
        "imagePullPolicy": "IfNotPresent",
        "command": container_command(service),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": f"{name}-env"}}],
        "env": variables,
        **_probes(service.readiness, service.liveness, service.startup),
    }
    if resources:
        container["resources"] = resources
    container["securityContext"] = _container_security()
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
            "replicas": service.replicas,
            "selector": {"matchLabels": selector(plan, name)},
            # One SQLite writer at a time: the old pod stops before the new one starts.
            "strategy": {"type": "Recreate"}
            if sqlite
            else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "corral.dev/config-checksum": _checksum(*env.values()),
                        **_scrape(CONTAINER_PORT, contract.METRICS_PATH),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(SERVICE_UID),
                    "terminationGracePeriodSeconds": whole_seconds(service.stop_grace_period),
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
                "metadata": {**meta, "name": instances_service(name)},
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
        objects.append(_pdb(plan, options, name, component))
    if sqlite:
        objects.append(_claim(plan, options, f"{name}-data", component))
    return objects


def _gateway_objects(plan: Plan, options: ExportOptions, sources: Sources) -> list[dict[str, Any]]:
    gateway = plan.gateway
    assert gateway is not None
    name = GATEWAY_HOST
    component = "gateway"
    meta = _metadata(plan, options, name, component)
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
        "securityContext": _container_security(),
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
                            "corral.dev/config-checksum": _checksum(*data.values()),
                            **_scrape(GATEWAY_STATS_PORT, "/stats/prometheus"),
                        },
                    },
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": _pod_security(ENVOY_UID),
                        "terminationGracePeriodSeconds": 5,
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
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
    ]


def _nats_objects(plan: Plan, options: ExportOptions) -> list[dict[str, Any]]:
    name = NATS_HOST
    component = "broker"
    meta = _metadata(plan, options, name, component)
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
        "securityContext": _container_security(),
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
        "securityContext": _container_security(),
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
                            "corral.dev/config-checksum": _checksum(config),
                            **_scrape(NATS_EXPORTER_PORT, "/metrics"),
                        },
                    },
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": _pod_security(NATS_UID),
                        "terminationGracePeriodSeconds": 30,
                        "containers": [nats, exporter],
                        "volumes": [{"name": "config", "configMap": {"name": name}}],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": labels(plan, name, component)},
                        "spec": _claim_spec(options),
                    }
                ],
            },
        },
    ]


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
    ]


def render_kubernetes(plan: Plan, options: ExportOptions, sources: Sources) -> Export:
    problems = check_kubernetes(plan)
    if plan.gateway is not None:
        problems += jwks_documents(plan, sources)[1]
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
    for name in sorted(plan.services):
        objects = _service_objects(plan, plan.services[name], options, notes)
        files[f"kubernetes/{name}.yaml"] = to_yaml(objects, comment=comment)
    if plan.gateway is not None:
        files[f"kubernetes/{GATEWAY_HOST}.yaml"] = to_yaml(
            _gateway_objects(plan, options, sources), comment=comment
        )
    if runs_nats(plan):
        files[f"kubernetes/{NATS_HOST}.yaml"] = to_yaml(
            _nats_objects(plan, options), comment=comment
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
