"""The system as a graph, for the dashboard's at-a-glance view. Pure.

Nodes are the gateway, the services and the event topics; edges are what the plan says
(gateway routes, ``depends_on``, who publishes and consumes each topic) plus the calls
the services' clients were seen making (``observed``, from their metrics), since the
manifest does not list calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.plan import Plan

__all__ = ["GATEWAY_NODE", "system_graph"]

GATEWAY_NODE = "gateway"


def _route_label(prefix: str | None, exact: str | None, regex: str | None) -> str:
    if exact is not None:
        return exact
    if regex is not None:
        return f"~{regex}"
    return f"{prefix or '/'}*"


def system_graph(plan: Plan, *, observed_calls: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """``{"nodes": [...], "edges": [...]}``, sorted so the same plan draws the same way.

    Node: ``{"id", "kind": gateway|service|topic, "label"}``. Edge: ``{"from", "to",
    "kind": route|depends_on|call|publish|subscribe, "label"}``."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    if plan.gateway is not None:
        nodes.append({"id": GATEWAY_NODE, "kind": "gateway", "label": "gateway"})
        labels: dict[str, list[str]] = {}
        for route in plan.gateway.routes:
            label = _route_label(route.prefix, route.exact, route.regex)
            labels.setdefault(route.service, []).append(label)
        for service, found in sorted(labels.items()):
            edges.append(
                {"from": GATEWAY_NODE, "to": service, "kind": "route", "label": ", ".join(found)}
            )
    for name in plan.start_order:
        nodes.append({"id": name, "kind": "service", "label": name})
        for dependency in sorted(plan.services[name].depends_on):
            edges.append({"from": name, "to": dependency, "kind": "depends_on", "label": ""})
    known = set(plan.services)
    for caller, target in sorted(set(observed_calls)):
        if caller in known and target in known:
            edges.append({"from": caller, "to": target, "kind": "call", "label": ""})
    if plan.events is not None:
        for topic in plan.events.topics:
            node = f"topic:{topic.name}"
            nodes.append({"id": node, "kind": "topic", "label": topic.name})
            for producer in topic.producers:
                edges.append({"from": producer, "to": node, "kind": "publish", "label": ""})
            for consumer in topic.consumers:
                edges.append({"from": node, "to": consumer, "kind": "subscribe", "label": ""})
    return {"nodes": nodes, "edges": edges}
