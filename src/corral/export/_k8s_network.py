"""Who may talk to whom: the system's NetworkPolicies, from what the manifest declares. Pure.

``corral-default-deny`` selects every pod of the system and allows nothing but DNS (to
the ``kube-system`` namespace, port 53), in and out. Each pod then gets one policy named
after it that opens exactly its declared paths, on both ends (a connection needs the
sender's egress and the receiver's ingress):

- anyone -> the gateway's listener (it is the edge: an Ingress, a Gateway or a port-forward
  reaches it from outside the namespace);
- the gateway -> every service it has a cluster for (its routes and JWKS services);
- a service -> each service in its ``calls:`` (an undeclared call is refused: ``calls:``
  is the architecture ``corral lint`` checks, now enforced);
- a service that produces or consumes a topic -> NATS (the exported one, or the port of
  ``events.url`` anywhere);
- a ``postgres`` service -> port 5432 anywhere (its server's address is in a Secret the
  export never sees);
- with monitoring exported (the Prometheus target or ``--servicemonitor``), pods labelled
  ``app.kubernetes.io/name: prometheus`` in any namespace (what the Prometheus Operator
  and the community chart set) -> each pod's metrics port.

The kubelet's probes need no rule: traffic from the pod's own node is always allowed.
Policies only add up, so anything else (an external API, an OTLP collector) is a
NetworkPolicy of its own in an overlay.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from corral.export._environment import GATEWAY_HOST, NATS_HOST, runs_nats
from corral.export._k8s_objects import MANAGED_BY, metadata, selector
from corral.export._model import (
    CONTAINER_PORT,
    GATEWAY_PORT,
    GATEWAY_STATS_PORT,
    NATS_EXPORTER_PORT,
    NATS_PORT,
    ExportOptions,
)
from corral.manifest import DatabaseEngine
from corral.plan import Plan

DEFAULT_DENY = "corral-default-deny"
DNS_PORT = 53
POSTGRES_PORT = 5432
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
"""The label Prometheus' pods carry (Prometheus Operator, prometheus-community chart)."""
KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}
"""Set by Kubernetes on every namespace (1.21+): where the cluster's DNS runs."""

Rule = dict[str, Any]


def _ports(*numbers: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": number} for number in numbers]


def _pods(plan: Plan, name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": selector(plan, name)}}


def _prometheus() -> dict[str, Any]:
    return {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(PROMETHEUS)}}


def _from(peers: list[dict[str, Any]], port: int) -> Rule:
    return {"from": peers, "ports": _ports(port)}


def _to(peers: list[dict[str, Any]] | None, *ports: int) -> Rule:
    """To ``peers`` on ``ports``; ``None``: to any address (outside the cluster too)."""
    return {"ports": _ports(*ports)} if peers is None else {"to": peers, "ports": _ports(*ports)}


def _policy(
    plan: Plan, options: ExportOptions, name: str, ingress: list[Rule], egress: list[Rule]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector(plan, name)},
        "policyTypes": ["Ingress", "Egress"],
    }
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(plan, options, name, "network-policy"),
        "spec": spec,
    }


def _nats_ports(plan: Plan) -> tuple[int, ...]:
    """The ports of ``events.url`` (each server of a comma-separated list)."""
    url = plan.events.url if plan.events is not None else None
    assert url is not None
    ports = {urlsplit(one.strip()).port or NATS_PORT for one in url.split(",")}
    return tuple(sorted(ports))


def _with_topics(plan: Plan) -> list[str]:
    if plan.events is None:
        return []
    return sorted(name for name in plan.services if plan.events.topics_of(name))


def _default_deny(plan: Plan, options: ExportOptions) -> dict[str, Any]:
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": dict(KUBE_SYSTEM)}}],
        "ports": _ports(DNS_PORT, protocol="UDP") + _ports(DNS_PORT),
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(plan, options, DEFAULT_DENY, "network-policy"),
        "spec": {
            # Every pod of this system (not the namespace's others, if it is shared).
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/part-of": plan.system,
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                }
            },
            "policyTypes": ["Ingress", "Egress"],
            "egress": [dns],
        },
    }


def network_policies(plan: Plan, options: ExportOptions, *, scraped: bool) -> list[dict[str, Any]]:
    """The default deny, then one policy per pod that has a declared path (by name)."""
    routed = {c.name for c in plan.gateway.clusters} if plan.gateway is not None else set()
    talkers = _with_topics(plan)
    out = [_default_deny(plan, options)]
    for name in sorted(plan.services):
        service = plan.services[name]
        ingress: list[Rule] = []
        egress: list[Rule] = []
        if name in routed:
            ingress.append(_from([_pods(plan, GATEWAY_HOST)], CONTAINER_PORT))
        if callers := plan.callers(name):
            ingress.append(_from([_pods(plan, c) for c in callers], CONTAINER_PORT))
        if scraped:
            ingress.append(_from([_prometheus()], CONTAINER_PORT))
        if service.calls:
            egress.append(_to([_pods(plan, c) for c in service.calls], CONTAINER_PORT))
        if name in talkers:
            if runs_nats(plan):
                egress.append(_to([_pods(plan, NATS_HOST)], NATS_PORT))
            else:
                egress.append(_to(None, *_nats_ports(plan)))
        if service.database.engine is DatabaseEngine.POSTGRES:
            egress.append(_to(None, POSTGRES_PORT))
        if ingress or egress:
            out.append(_policy(plan, options, name, ingress, egress))
    if plan.gateway is not None:
        ingress = [{"ports": _ports(GATEWAY_PORT)}]
        if scraped:
            ingress.append(_from([_prometheus()], GATEWAY_STATS_PORT))
        egress = [_to([_pods(plan, c) for c in sorted(routed)], CONTAINER_PORT)]
        out.append(_policy(plan, options, GATEWAY_HOST, ingress, egress))
    if runs_nats(plan):
        ingress = [_from([_pods(plan, s) for s in talkers], NATS_PORT)] if talkers else []
        if scraped:
            ingress.append(_from([_prometheus()], NATS_EXPORTER_PORT))
        if ingress:
            out.append(_policy(plan, options, NATS_HOST, ingress, []))
    return out
