"""The gateway in a container (Compose, Kubernetes): clusters resolved through the
platform's DNS instead of the registry's EDS files. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from corral.gateway._envoy import Json
from corral.gateway._render import Ports, render_cluster
from corral.gateway._static import inline_bootstrap
from corral.plan import ClusterPlan, GatewayPlan


@dataclass(frozen=True)
class DnsTarget:
    """Where a cluster's instances are found on a container platform: every address
    ``host`` resolves to (a Compose service name, a headless Kubernetes Service) on
    ``port``."""

    host: str
    port: int


def render_dns(
    plan: GatewayPlan,
    *,
    targets: Mapping[str, DnsTarget],
    ports: Ports,
    admin_socket: str,
    stats_address: str = "0.0.0.0",
) -> Json:
    """One self-contained bootstrap for Envoy in a container: the same listener, routes
    and cluster policies as :func:`corral.gateway.render`, but each cluster is STRICT_DNS
    on its service's name (re-resolved every few seconds, each address an endpoint)
    instead of the registry's EDS, and the stats listener answers on ``stats_address``
    for the platform's probes and Prometheus."""
    clusters = [_dns_cluster(cluster, targets[cluster.name]) for cluster in plan.clusters]
    return inline_bootstrap(
        plan,
        clusters=clusters,
        ports=ports,
        admin_socket=admin_socket,
        stats_address=stats_address,
    )


def _dns_cluster(cluster: ClusterPlan, target: DnsTarget) -> Json:
    address = {"socket_address": {"address": target.host, "port_value": target.port}}
    assignment: Json = {
        "cluster_name": cluster.name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
    }
    rendered = render_cluster(cluster, eds=assignment)
    rendered["type"] = "STRICT_DNS"
    rendered["dns_lookup_family"] = "V4_PREFERRED"
    if cluster.health_check is not None:
        # Here the health check stands in for the registry's readiness: an instance
        # failing it gets no traffic, even when all do (Envoy's default panic mode
        # would send to every host once half of them fail).
        rendered["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
    return rendered
