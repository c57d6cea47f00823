"""``--servicemonitor``: ServiceMonitors (Prometheus Operator, ``monitoring.coreos.com/v1``)
for the services, the gateway and NATS. Pure.

The same targets and labels as ``prometheus/kubernetes.yml`` (which finds pods by their
``prometheus.io/*`` annotations): every target gets ``system`` and ``service`` labels, so
the exported alert rules and Grafana dashboard read the same. Three monitors, because each
kind of pod is scraped on its own port and path and a ServiceMonitor's endpoints apply to
every Service it selects:

- ``corral-services``: each service's Service, port ``http``, ``/metrics``. The headless
  ``<service>-instances`` Services select the same pods, so they carry the label
  :data:`HEADLESS_LABEL` and are left out (or every pod would be scraped twice);
- ``corral-gateway``: Envoy's ``/stats/prometheus`` on the Service's ``stats`` port;
- ``corral-nats``: the exporter's ``/metrics`` on the Service's ``metrics`` port.

Those two ports are added to the Services only with ``--servicemonitor``; the network
policies let Prometheus' pods reach them (see ``_k8s_network.py``).
"""

from __future__ import annotations

from typing import Any

from corral.export._environment import GATEWAY_HOST, NATS_HOST, runs_nats
from corral.export._k8s_objects import metadata, selector
from corral.export._model import ExportOptions
from corral.plan import Plan

HEADLESS_LABEL = "corral.dev/headless"
"""On the ``<service>-instances`` Services (value ``"true"``)."""
SERVICES_MONITOR = "corral-services"


def _relabelings(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "targetLabel": "service",
        },
        {"action": "replace", "targetLabel": "system", "replacement": plan.system},
    ]


def _monitor(
    plan: Plan,
    options: ExportOptions,
    name: str,
    chooser: dict[str, Any],
    port: str,
    path: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(plan, options, name, "monitoring"),
        "spec": {
            "selector": chooser,
            "endpoints": [{"port": port, "path": path, "relabelings": _relabelings(plan)}],
        },
    }


def service_monitors(plan: Plan, options: ExportOptions) -> list[dict[str, Any]]:
    services = {
        "matchLabels": {
            "app.kubernetes.io/part-of": plan.system,
            "app.kubernetes.io/component": "service",
        },
        "matchExpressions": [{"key": HEADLESS_LABEL, "operator": "DoesNotExist"}],
    }
    out = [_monitor(plan, options, SERVICES_MONITOR, services, "http", "/metrics")]
    if plan.gateway is not None:
        out.append(
            _monitor(
                plan,
                options,
                GATEWAY_HOST,
                {"matchLabels": selector(plan, GATEWAY_HOST)},
                "stats",
                "/stats/prometheus",
            )
        )
    if runs_nats(plan):
        out.append(
            _monitor(
                plan,
                options,
                NATS_HOST,
                {"matchLabels": selector(plan, NATS_HOST)},
                "metrics",
                "/metrics",
            )
        )
    return out
