"""Logging: an OpenTelemetry Collector that ships the services' log lines to Elasticsearch
or Loki, for the Compose and Kubernetes exports. Pure.

Why the OpenTelemetry Collector (contrib distribution) and not Fluent Bit or Vector: the
services already speak OTLP for traces, so one collector can carry both; its
``elasticsearch`` exporter writes Elastic Common Schema documents itself
(``mapping.mode: ecs``), and Loki 3 ingests OTLP natively, so one pipeline serves both
backends with nothing Corral-specific on the receiving side. Fluent Bit would need a Lua
or ``modify`` filter per field for ECS, Vector a VRL program; neither carries traces.

Files, under ``logging/``:

- ``compose/collector.yaml``: reads Docker's JSON log files of every container;
  ``kubernetes/collector.yaml``: the kubelet's files of the system's namespace only;
- ``to-elasticsearch.yaml`` and ``to-loki.yaml``: the exporter and the pipeline's end,
  merged with the collector file (``otelcol-contrib --config A --config B``), so the
  backend is chosen at start without editing a file;
- ``compose/compose.logging.yaml``: the collector as a service beside the Compose
  export (``docker compose -f compose/compose.yaml -f logging/compose/compose.logging.yaml
  up``; ``CORRAL_LOGS_TO=loki`` picks Loki);
- ``kubernetes/daemonset.yaml``: a DaemonSet and its ServiceAccount, and
  ``kustomization.yaml``, which makes the ConfigMap from the three files
  (``kubectl apply -k logging``).

Each SDK line is one JSON object (``CORRAL_LOG_FORMAT=json``, the default, or ``ecs``):
both namings are brought to one shape, then ``level`` becomes the record's severity,
``timestamp`` its time, ``trace_id``/``span_id`` its trace context, ``event`` its body,
``service``/``instance`` the resource's ``service.name``/``service.instance.id``; other
fields stay attributes. A line that is not JSON (Envoy, NATS, a ``command:`` service) is
shipped as it is.
"""

from __future__ import annotations

from typing import Any

from corral.export._model import Export, ExportOptions
from corral.export._text import HEADER, to_yaml
from corral.plan import Plan

COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.165.0"
"""The collector distribution with the filelog receiver and both exporters."""
ELASTICSEARCH_ENDPOINT = "ELASTICSEARCH_ENDPOINT"
ELASTICSEARCH_API_KEY = "ELASTICSEARCH_API_KEY"
LOKI_ENDPOINT = "LOKI_ENDPOINT"
_CONFIG_DIR = "/etc/corral-logging"
_DOCKER_LOGS = "/var/lib/docker/containers"
_POD_LOGS = "/var/log/pods"

# The ECS names the SDK writes with CORRAL_LOG_FORMAT=ecs -> its default names.
_FROM_ECS = (
    ("log.level", "level"),
    ("message", "event"),
    ("@timestamp", "timestamp"),
    ("service.name", "service"),
    ("service.node.name", "instance"),
    ("trace.id", "trace_id"),
    ("span.id", "span_id"),
)


def _attribute(name: str) -> str:
    return f'attributes["{name}"]'


def _sdk_line_operators() -> list[dict[str, Any]]:
    """Stanza operators from a container's line to an OpenTelemetry log record."""
    ops: list[dict[str, Any]] = [
        {
            "type": "json_parser",
            "id": "sdk-line",
            "if": 'body matches "^\\\\s*\\\\{"',
            "parse_from": "body",
            "parse_to": "attributes",
        }
    ]
    for ecs, default in _FROM_ECS:
        ops.append(
            {
                "type": "move",
                "id": f"from-ecs-{default}",
                "if": f"{_attribute(ecs)} != nil",
                "from": _attribute(ecs),
                "to": _attribute(default),
            }
        )
    ops += [
        {
            "type": "remove",
            "id": "ecs-version",
            "if": f"{_attribute('ecs.version')} != nil",
            "field": _attribute("ecs.version"),
        },
        {
            "type": "severity_parser",
            "if": f"{_attribute('level')} != nil",
            "parse_from": _attribute("level"),
        },
        {
            "type": "time_parser",
            "if": f"{_attribute('timestamp')} != nil",
            "parse_from": _attribute("timestamp"),
            "layout_type": "gotime",
            "layout": "2006-01-02T15:04:05.999999Z07:00",
        },
        {
            "type": "trace_parser",
            "if": f"{_attribute('trace_id')} != nil",
            "trace_id": {"parse_from": _attribute("trace_id")},
            "span_id": {"parse_from": _attribute("span_id")},
        },
        {
            "type": "move",
            "id": "service-name",
            "if": f"{_attribute('service')} != nil",
            "from": _attribute("service"),
            "to": 'resource["service.name"]',
        },
        {
            "type": "move",
            "id": "service-instance",
            "if": f"{_attribute('instance')} != nil",
            "from": _attribute("instance"),
            "to": 'resource["service.instance.id"]',
        },
        {
            "type": "move",
            "id": "message",
            "if": f"{_attribute('event')} != nil",
            "from": _attribute("event"),
            "to": "body",
        },
    ]
    return ops


def _collector(plan: Plan, *, include: str, container_format: str) -> dict[str, Any]:
    """The receiving half: files, parsing, the system's resource attributes, batching."""
    return {
        "receivers": {
            "filelog/corral": {
                "include": [include],
                "start_at": "end",
                "include_file_path": True,
                "operators": [
                    {
                        "type": "container",
                        "format": container_format,
                        # Pod, namespace and container come from the kubelet's paths;
                        # Docker's name only a container id (the line names its service).
                        "add_metadata_from_filepath": container_format != "docker",
                    },
                    *_sdk_line_operators(),
                ],
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80},
            "resource/corral": {
                "attributes": [
                    {"key": "corral.system", "value": plan.system, "action": "upsert"},
                ]
            },
            "batch": {"send_batch_size": 1024, "timeout": "1s"},
        },
        "service": {
            "pipelines": {
                "logs": {
                    "receivers": ["filelog/corral"],
                    "processors": ["memory_limiter", "resource/corral", "batch"],
                }
            }
        },
    }


def _to_elasticsearch(plan: Plan) -> dict[str, Any]:
    return {
        "exporters": {
            "elasticsearch": {
                "endpoint": "${env:" + ELASTICSEARCH_ENDPOINT + "}",
                "api_key": "${env:" + ELASTICSEARCH_API_KEY + "}",
                "logs_index": f"logs-corral-{plan.system}",
                "mapping": {"mode": "ecs"},
            }
        },
        "service": {"pipelines": {"logs": {"exporters": ["elasticsearch"]}}},
    }


def _to_loki() -> dict[str, Any]:
    return {
        "exporters": {
            # Loki 3 ingests OTLP at /otlp: service.name becomes its label.
            "otlphttp/loki": {"endpoint": "${env:" + LOKI_ENDPOINT + "}/otlp"}
        },
        "service": {"pipelines": {"logs": {"exporters": ["otlphttp/loki"]}}},
    }


def _command(backend: str) -> list[str]:
    return [
        f"--config={_CONFIG_DIR}/collector.yaml",
        f"--config={_CONFIG_DIR}/{backend}",
    ]


def _compose_service() -> dict[str, Any]:
    return {
        "services": {
            "corral-logging": {
                "image": COLLECTOR_IMAGE,
                # Compose substitutes the backend when it starts the collector.
                "command": _command("to-${CORRAL_LOGS_TO:-elasticsearch}.yaml"),
                "user": "0",  # Docker's log files are root's
                "restart": "unless-stopped",
                "environment": {
                    ELASTICSEARCH_ENDPOINT: "${" + ELASTICSEARCH_ENDPOINT + ":-}",
                    ELASTICSEARCH_API_KEY: "${" + ELASTICSEARCH_API_KEY + ":-}",
                    LOKI_ENDPOINT: "${" + LOKI_ENDPOINT + ":-}",
                },
                "volumes": [
                    f"../logging/compose/collector.yaml:{_CONFIG_DIR}/collector.yaml:ro",
                    f"../logging/to-elasticsearch.yaml:{_CONFIG_DIR}/to-elasticsearch.yaml:ro",
                    f"../logging/to-loki.yaml:{_CONFIG_DIR}/to-loki.yaml:ro",
                    f"{_DOCKER_LOGS}:{_DOCKER_LOGS}:ro",
                ],
            }
        }
    }


def _kubernetes(plan: Plan, namespace: str) -> dict[str, str | list[dict[str, Any]]]:
    name = "corral-logging"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": plan.system}
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "collector",
                            "image": COLLECTOR_IMAGE,
                            "args": _command("to-elasticsearch.yaml"),
                            "env": [
                                {
                                    "name": variable,
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": name,
                                            "key": variable,
                                            "optional": True,
                                        }
                                    },
                                }
                                for variable in (
                                    ELASTICSEARCH_ENDPOINT,
                                    ELASTICSEARCH_API_KEY,
                                    LOKI_ENDPOINT,
                                )
                            ],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": {
                                "runAsUser": 0,  # the kubelet's log files are root's
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True},
                                {"name": "pods", "mountPath": _POD_LOGS, "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": name}},
                        {"name": "pods", "hostPath": {"path": _POD_LOGS}},
                    ],
                },
            },
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": ["kubernetes/daemonset.yaml"],
        # kustomize reads files only below its own folder: hence this one at logging/.
        "configMapGenerator": [
            {
                "name": name,
                "files": [
                    "collector.yaml=kubernetes/collector.yaml",
                    "to-elasticsearch.yaml",
                    "to-loki.yaml",
                ],
            }
        ],
    }
    return {"daemonset": [account, daemonset], "kustomization": [kustomization]}


def render_logging(plan: Plan, options: ExportOptions) -> Export:
    """The collector configurations and how to run them beside each export."""
    comment = HEADER.format(source=options.source)
    namespace = options.namespace_of(plan.system)
    kubernetes = _kubernetes(plan, namespace)
    backend = (
        "\nMerged with logging/{platform}/collector.yaml: "
        "otelcol-contrib --config collector.yaml --config {file}"
    )
    files = {
        "logging/compose/collector.yaml": to_yaml(
            [_collector(plan, include=f"{_DOCKER_LOGS}/*/*-json.log", container_format="docker")],
            comment=comment + "\nAn OpenTelemetry Collector reading Docker's container logs.",
        ),
        "logging/kubernetes/collector.yaml": to_yaml(
            [
                _collector(
                    plan,
                    include=f"{_POD_LOGS}/{namespace}_*/*/*.log",
                    container_format="auto",
                )
            ],
            comment=comment
            + f"\nAn OpenTelemetry Collector reading the pods' logs of namespace {namespace}.",
        ),
        "logging/to-elasticsearch.yaml": to_yaml(
            [_to_elasticsearch(plan)],
            comment=comment
            + backend.format(platform="{compose,kubernetes}", file="to-elasticsearch.yaml")
            + f"\nECS documents into the data stream logs-corral-{plan.system}; set "
            f"{ELASTICSEARCH_ENDPOINT} (and {ELASTICSEARCH_API_KEY}).",
        ),
        "logging/to-loki.yaml": to_yaml(
            [_to_loki()],
            comment=comment
            + backend.format(platform="{compose,kubernetes}", file="to-loki.yaml")
            + f"\nOTLP to Loki 3 (its /otlp endpoint); set {LOKI_ENDPOINT}, e.g. "
            "http://loki:3100.",
        ),
        "logging/compose/compose.logging.yaml": to_yaml(
            [_compose_service()],
            comment=comment
            + "\ndocker compose -f compose/compose.yaml -f logging/compose/compose.logging.yaml"
            " up -d\nCORRAL_LOGS_TO=loki ships to Loki instead of Elasticsearch.",
        ),
        "logging/kubernetes/daemonset.yaml": to_yaml(
            kubernetes["daemonset"],
            comment=comment
            + f"\nkubectl apply -k logging; the Secret corral-logging in {namespace}"
            f" holds {ELASTICSEARCH_ENDPOINT}, {ELASTICSEARCH_API_KEY} or {LOKI_ENDPOINT}."
            "\nFor Loki, change the second --config to to-loki.yaml.",
        ),
        "logging/kustomization.yaml": to_yaml(kubernetes["kustomization"], comment=comment),
    }
    return Export(dict(sorted(files.items())))
