"""Self-contained bootstraps: routes and endpoints inline, no xDS files. Pure.

``corral up`` feeds Envoy through files it rewrites live (_render.py). Two consumers want
one document instead: ``envoy --mode validate``, which checks static resources only
(:func:`render_static`), and a gateway in a container, whose clusters resolve DNS names
(_dns.py). Both build on :func:`inline_bootstrap`.
"""

from __future__ import annotations

from corral.gateway._admin_access import admin, admin_cluster, stats_listener
from corral.gateway._envoy import Json
from corral.gateway._render import (
    Layout,
    Ports,
    node,
    render_cluster,
    render_endpoints,
    render_listener,
    render_routes,
)
from corral.plan import GatewayPlan
from corral.runtime.registry import Snapshot


def inline_bootstrap(
    plan: GatewayPlan,
    *,
    clusters: list[Json],
    ports: Ports,
    admin_socket: str,
    stats_address: str = "127.0.0.1",
) -> Json:
    """The gateway's listener with its routes inline, the stats listener, ``clusters``
    (each with its endpoints inline) and the admin API on ``admin_socket``."""
    listener = render_listener(plan, ports.listener, routes={"route_config": render_routes(plan)})
    return {
        "node": node(plan),
        "admin": admin(admin_socket),
        "static_resources": {
            "listeners": [listener, stats_listener(ports.stats, address=stats_address)],
            "clusters": [*clusters, admin_cluster(admin_socket)],
        },
    }


def render_static(
    plan: GatewayPlan, snapshot: Snapshot, *, ports: Ports, layout: Layout | None = None
) -> Json:
    """One self-contained bootstrap (routes and endpoints inline) for ``--mode validate``,
    which checks static resources only (and binds nothing: ``layout`` is only named)."""
    layout = layout or Layout("/corral")
    endpoints = render_endpoints(plan, snapshot)
    clusters = [render_cluster(c, eds=endpoints[c.name]) for c in plan.clusters]
    return inline_bootstrap(plan, clusters=clusters, ports=ports, admin_socket=layout.admin_socket)
