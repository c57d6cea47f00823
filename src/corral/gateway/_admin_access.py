"""How Envoy's admin API is reached: a Unix socket for the control plane, and a loopback
listener that exposes only readiness and Prometheus stats. Pure.

Envoy's admin API has no authentication, and it can stop the gateway (/quitquitquit),
drain its listeners, change its log level and dump its whole config. On a TCP port every
local user could do all that; a socket file of mode 0600 in the state directory (itself
0700) leaves it to the user who ran ``corral up``. What others legitimately need from
the admin API (a readiness probe, metrics for Prometheus) goes through a second, tiny
listener that routes exactly those two paths to the socket: the split Istio makes with
its stats and health ports.
"""

from __future__ import annotations

from corral.gateway._envoy import T_HCM, T_ROUTER, Json

ADMIN_CLUSTER = "corral-admin"
STATS_LISTENER_NAME = "corral-stats"
READY_PATH = "/ready"
STATS_PATH = "/stats/prometheus"
SOCKET_MODE = 0o600


def admin(socket: str) -> Json:
    """The bootstrap's ``admin`` block: the admin API on a Unix socket only."""
    return {"address": {"pipe": {"path": socket, "mode": SOCKET_MODE}}}


def admin_cluster(socket: str) -> Json:
    """A static cluster whose one endpoint is the admin socket."""
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket}}}}]}
            ],
        },
    }


def stats_listener(port: int, *, address: str = "127.0.0.1") -> Json:
    """``address``:``port`` answering GET /ready and /stats/prometheus (query strings pass,
    e.g. ``?usedonly``) from the admin API, and 404 to everything else. Loopback locally;
    in a container the platform's probes and Prometheus come from outside it."""
    get_only = [{"name": ":method", "string_match": {"exact": "GET"}}]
    routes: list[Json] = [
        {"match": {"path": path, "headers": get_only}, "route": {"cluster": ADMIN_CLUSTER}}
        for path in (READY_PATH, STATS_PATH)
    ]
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 404}})
    hcm: Json = {
        "@type": T_HCM,
        "stat_prefix": "corral_stats",
        "route_config": {
            "name": STATS_LISTENER_NAME,
            "virtual_hosts": [{"name": STATS_LISTENER_NAME, "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {"name": "envoy.filters.http.router", "typed_config": {"@type": T_ROUTER}}
        ],
    }
    return {
        "name": STATS_LISTENER_NAME,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
