"""The renderer for ``corral up``: GatewayPlan + registry Snapshot -> Envoy config dicts
delivered as file-based xDS. Pure. (Self-contained bootstraps, for Envoy's validator and
for containers, are in _static.py and _dns.py.)

Output shape (everything stably sorted, so goldens and diffs are readable):

- a bootstrap with the admin interface (on a Unix socket), one static listener whose
  connection manager takes its routes from a file (RDS), clusters from a file (CDS), and
  the loopback stats listener (readiness and Prometheus stats only; _admin_access.py);
- the route configuration (RDS): one virtual host, routes in manifest order (each
  preceded, where it could reach one, by a 404 for the service's internal endpoints:
  _internal.py), then a catch-all 404;
- the clusters (CDS), one per target service, each taking endpoints from its own file
  (EDS), so an instance coming or going rewrites one small file and never the listener.

Only instances that are ``serving`` (ready, not draining) become endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from corral import contract
from corral.gateway._admin_access import admin, admin_cluster, stats_listener
from corral.gateway._envoy import (
    F_JWT,
    T_CLUSTER,
    T_ENDPOINTS,
    T_HCM,
    T_HTTP_PROTOCOL_OPTIONS,
    T_PREVIOUS_HOSTS,
    T_ROUTE_CONFIG,
    T_STDOUT_LOG,
    X_HTTP_PROTOCOL_OPTIONS,
    Json,
    discovery_response,
    duration,
    header_value,
)
from corral.gateway._faults import runtime_layers
from corral.gateway._filters import (
    http_filters,
    local_reply_config,
    off,
    route_filter_configs,
)
from corral.gateway._internal import refused_paths
from corral.manifest import HTTP_METHODS, IDEMPOTENT_METHODS, KeyPath, LoadBalancing, RetryOn
from corral.plan import ClusterPlan, GatewayPlan, RoutePlan
from corral.runtime.registry import Snapshot

ROUTE_CONFIG_NAME = "corral"
LISTENER_NAME = "gateway"
NOT_FOUND_ROUTE = "corral-not-found"
UNSAFE_SUFFIX = "/unsafe-methods"
INTERNAL_SUFFIX = "/internal"


@dataclass(frozen=True)
class Layout:
    """Where the xDS files and the admin socket live (absolute paths in the config)."""

    directory: str
    socket: str | None = None
    """The admin socket when not ``<directory>/admin.sock`` (a Unix socket path must fit
    in 107 bytes, which a deep state directory may not: GatewayAddon.prepare then picks a
    private short directory)."""

    @property
    def admin_socket(self) -> str:
        return self.socket or str(PurePosixPath(self.directory) / "admin.sock")

    @property
    def cds(self) -> str:
        return str(PurePosixPath(self.directory) / "cds.json")

    @property
    def rds(self) -> str:
        return str(PurePosixPath(self.directory) / "rds.json")

    def eds(self, cluster: str) -> str:
        return str(PurePosixPath(self.directory) / "eds" / f"{cluster}.json")


@dataclass(frozen=True)
class Ports:
    listener: int
    stats: int
    """Loopback port of Envoy's readiness and Prometheus stats (not the admin API)."""


# --- routes (RDS) ---------------------------------------------------------------------


def render_routes(plan: GatewayPlan) -> Json:
    """The RouteConfiguration: the user's routes in order, then a problem+json 404."""
    routes: list[Json] = []
    for route in plan.routes:
        internal = refused_paths(route)
        if internal is not None:
            routes.append(_internal_route(plan, route, internal))
        routes.extend(_route(plan, route))
    routes.append(_not_found(plan, NOT_FOUND_ROUTE, {"prefix": "/"}))
    return {
        "name": ROUTE_CONFIG_NAME,
        "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        # Claim headers are stripped on the way in by a filter; nothing else is needed here.
    }


def _not_found(plan: GatewayPlan, name: str, match: Json) -> Json:
    """A problem+json 404 for ``match``, asking no token (it reveals nothing)."""
    # A direct response is a local reply: local_reply_config's 404 mapper wraps this body
    # as the problem's "detail" (a problem JSON here came out nested inside "detail").
    out: Json = {
        "name": name,
        "match": match,
        "direct_response": {
            "status": 404,
            "body": {"inline_string": "no route matches this request"},
        },
    }
    if plan.providers:
        out["typed_per_filter_config"] = {F_JWT: off()}
    return out


def _internal_route(plan: GatewayPlan, route: RoutePlan, paths: str) -> Json:
    """Just before ``route``: the requests it would forward to an internal endpoint
    (``paths``, see _internal.py) get the 404 of a path no route matches."""
    methods = set(route.methods) | ({"OPTIONS"} if route.cors else set())
    match = _match(route, methods or None)
    headers = match.setdefault("headers", [])
    headers.append({"name": ":path", "string_match": {"safe_regex": {"regex": paths}}})
    return _not_found(plan, route.name + INTERNAL_SUFFIX, match)


def route_names(plan: GatewayPlan) -> dict[str, KeyPath]:
    """Rendered route and cluster names -> the manifest key path they came from."""
    names: dict[str, KeyPath] = {}
    for route in plan.routes:
        names[route.name] = route.path
        names[route.name + UNSAFE_SUFFIX] = route.path
        names[route.name + INTERNAL_SUFFIX] = route.path
    for cluster in plan.clusters:
        names[cluster.name] = cluster.path
    for provider in plan.providers:
        names[provider.name] = provider.path
    return names


def _route(plan: GatewayPlan, route: RoutePlan) -> list[Json]:
    """One manifest route as one Envoy route, or two when only some methods may retry."""
    methods = set(route.methods) or set(HTTP_METHODS)
    if route.cors and route.methods:
        methods.add("OPTIONS")  # let preflights reach the CORS filter
    on = tuple(sorted(str(o) for o in route.retry.on)) if route.retry.retries > 0 else ()
    if not on or route.retry.retry_non_idempotent:
        return [_envoy_route(plan, route, route.name, methods, retry_on=on, all_=True)]
    safe = methods & set(IDEMPOTENT_METHODS)
    unsafe = methods - safe
    out: list[Json] = []
    if safe:
        out.append(_envoy_route(plan, route, route.name, safe, retry_on=on, all_=not unsafe))
    if unsafe:
        name = route.name + UNSAFE_SUFFIX if safe else route.name
        unsent = tuple(sorted({part for o in on for part in _NEVER_SENT.get(o, ())}))
        out.append(
            _envoy_route(plan, route, name, unsafe, retry_on=unsent, all_=not safe, per_try=False)
        )
    return out


# A request that may change state is retried only when Envoy knows the upstream never got
# it: the connection failed, or was reset before a byte of the request went out. A reset
# later, or any 5xx, may follow a change that was made. In Envoy, 5xx and gateway-error
# also cover connection failures and resets, so each policy keeps its unsent part.
_UNSENT_PART = ("connect-failure", "reset-before-request")
_NEVER_SENT: dict[str, tuple[str, ...]] = {
    str(RetryOn.CONNECT_FAILURE): ("connect-failure",),
    str(RetryOn.RESET): ("reset-before-request",),
    str(RetryOn.SERVER_ERROR): _UNSENT_PART,
    str(RetryOn.GATEWAY_ERROR): _UNSENT_PART,
}


def _envoy_route(
    plan: GatewayPlan,
    route: RoutePlan,
    name: str,
    methods: set[str],
    *,
    retry_on: tuple[str, ...],
    all_: bool,
    per_try: bool = True,
) -> Json:
    """``per_try``: apply the policy's per-try timeout. Not for methods that may change
    state: it would cut their first attempt short (a 504 while the upstream may still
    apply the change), and their retries never follow a timeout anyway."""
    match = _match(route, None if all_ and not route.methods else methods)
    action: Json = {"cluster": route.service, "timeout": duration(route.timeout)}
    rewrite = _rewrite(route)
    if rewrite:
        action["regex_rewrite"] = rewrite
    if retry_on:
        policy = route.retry
        backoff_max = policy.backoff.max or policy.backoff.base * 10
        retry_policy: Json = {
            "retry_on": ",".join(retry_on),
            "num_retries": policy.retries,
            "retry_back_off": {
                "base_interval": duration(policy.backoff.base),
                "max_interval": duration(backoff_max),
            },
            # Retry on a different instance than the one that just failed.
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {"@type": T_PREVIOUS_HOSTS},
                }
            ],
            "host_selection_retry_max_attempts": 5,
        }
        if policy.per_try_timeout and per_try:
            retry_policy["per_try_timeout"] = duration(policy.per_try_timeout)
        action["retry_policy"] = retry_policy
    if route.websocket:
        action["upgrade_configs"] = [{"upgrade_type": "websocket", "enabled": True}]
    cluster = plan.cluster(route.service)
    if cluster.load_balancing is LoadBalancing.RING_HASH and cluster.hash_header:
        action["hash_policy"] = [{"header": {"header_name": cluster.hash_header}}]

    out: Json = {"name": name, "match": match, "route": action}
    if route.request_headers.set:
        out["request_headers_to_add"] = [
            header_value(k, v) for k, v in sorted(route.request_headers.set.items())
        ]
    if route.request_headers.remove:
        out["request_headers_to_remove"] = sorted(route.request_headers.remove)
    if route.response_headers.set:
        out["response_headers_to_add"] = [
            header_value(k, v) for k, v in sorted(route.response_headers.set.items())
        ]
    if route.response_headers.remove:
        out["response_headers_to_remove"] = sorted(route.response_headers.remove)
    per_filter = route_filter_configs(plan, route)
    if per_filter:
        out["typed_per_filter_config"] = per_filter
    return out


def _match(route: RoutePlan, methods: set[str] | None) -> Json:
    """The route's path rule, and its host, methods (None: any) and headers."""
    match: Json = _path_match(route)
    headers: list[Json] = []
    if route.host:
        headers.append(
            {
                "name": ":authority",
                "string_match": {"safe_regex": {"regex": _host_regex(route.host)}},
            }
        )
    if methods is not None:
        listed = sorted(methods)
        method_match: Json = (
            {"exact": listed[0]}
            if len(listed) == 1
            else {"safe_regex": {"regex": "^(" + "|".join(listed) + ")$"}}
        )
        headers.append({"name": ":method", "string_match": method_match})
    for header, spec in route.headers:
        if spec.present is not None:
            headers.append({"name": header, "present_match": spec.present})
        elif spec.exact is not None:
            headers.append({"name": header, "string_match": {"exact": spec.exact}})
        elif spec.prefix is not None:
            headers.append({"name": header, "string_match": {"prefix": spec.prefix}})
        else:
            headers.append({"name": header, "string_match": {"safe_regex": {"regex": spec.regex}}})
    if headers:
        match["headers"] = headers
    return match


def _path_match(route: RoutePlan) -> Json:
    if route.exact is not None:
        return {"path": route.exact}
    if route.regex is not None:
        return {"safe_regex": {"regex": route.regex}}
    assert route.prefix is not None
    if route.prefix.endswith("/"):
        return {"prefix": route.prefix}
    # /rides matches /rides and /rides/..., never /ridesx.
    return {"path_separated_prefix": route.prefix}


def _rewrite(route: RoutePlan) -> Json | None:
    if route.rewrite is None:
        return None
    if route.regex is not None:
        return {"pattern": {"regex": route.regex}, "substitution": route.rewrite}
    if route.exact is not None:
        return {"pattern": {"regex": "^.*$"}, "substitution": route.rewrite}
    assert route.prefix is not None
    stem = re.escape(route.prefix.rstrip("/"))
    pattern = f"^{stem}/?" if route.rewrite.endswith("/") else f"^{stem}"
    return {"pattern": {"regex": pattern}, "substitution": route.rewrite}


def _host_regex(host: str) -> str:
    port = "" if ":" in host else "(:[0-9]+)?"
    if host.startswith("*."):
        return "^[^.]+\\." + re.escape(host[2:]) + port + "$"
    return "^" + re.escape(host) + port + "$"


# --- clusters (CDS) and endpoints (EDS) ------------------------------------------------

_LB = {
    LoadBalancing.ROUND_ROBIN: "ROUND_ROBIN",
    LoadBalancing.LEAST_REQUEST: "LEAST_REQUEST",
    LoadBalancing.RING_HASH: "RING_HASH",
}


UPSTREAM_IDLE_TIMEOUT_SECONDS = contract.IDLE_KEEP_ALIVE_SECONDS - 15


def render_cluster(cluster: ClusterPlan, *, eds: Json | None = None, eds_path: str = "") -> Json:
    """One service's cluster: endpoints from ``eds_path`` (EDS), or inline ``eds``."""
    out: Json = {"name": cluster.name, "connect_timeout": duration(cluster.connect_timeout)}
    if eds is None:
        out["type"] = "EDS"
        out["eds_cluster_config"] = {
            "eds_config": {"path_config_source": {"path": eds_path}, "resource_api_version": "V3"}
        }
    else:
        out["type"] = "STATIC"
        out["load_assignment"] = eds
    out["lb_policy"] = _LB[cluster.load_balancing]
    # A removed instance leaves at once, even while its health checks still pass.
    out["ignore_health_on_host_removal"] = True
    # Envoy closes an idle upstream connection before the service does (see
    # contract.IDLE_KEEP_ALIVE_SECONDS): a request sent on a connection as the service
    # closes it would come back 503, and a POST is never retried.
    out["typed_extension_protocol_options"] = {
        X_HTTP_PROTOCOL_OPTIONS: {
            "@type": T_HTTP_PROTOCOL_OPTIONS,
            "common_http_protocol_options": {
                "idle_timeout": duration(UPSTREAM_IDLE_TIMEOUT_SECONDS)
            },
            "explicit_http_config": {"http_protocol_options": {}},
        }
    }
    breaker = cluster.circuit_breaker
    threshold: Json = {
        "priority": "DEFAULT",
        "max_connections": breaker.max_connections,
        "max_pending_requests": breaker.max_pending_requests,
        "max_requests": breaker.max_requests,
        "max_retries": breaker.max_retries,
    }
    if cluster.retry_budget:
        threshold["retry_budget"] = {
            "budget_percent": {"value": cluster.retry_budget.percent},
            "min_retry_concurrency": cluster.retry_budget.min_concurrency,
        }
    out["circuit_breakers"] = {"thresholds": [threshold]}
    if cluster.outlier_detection:
        od = cluster.outlier_detection
        out["outlier_detection"] = {
            "consecutive_5xx": od.consecutive_5xx,
            "consecutive_gateway_failure": od.consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure": 100,
            "interval": duration(od.interval),
            "base_ejection_time": duration(od.base_ejection_time),
            "max_ejection_percent": od.max_ejection_percent,
        }
    if cluster.health_check:
        hc = cluster.health_check
        out["health_checks"] = [
            {
                "timeout": duration(hc.timeout),
                "interval": duration(hc.interval),
                # Envoy checks a cluster that has had no traffic yet only every 60 s
                # (no_traffic_interval), and the timer armed then is not shortened when
                # traffic starts: a failing instance kept its traffic for up to a minute.
                "no_traffic_interval": duration(hc.interval),
                "unhealthy_threshold": hc.unhealthy_threshold,
                "healthy_threshold": hc.healthy_threshold,
                "http_health_check": {"path": hc.path},
            }
        ]
    return out


def render_clusters(plan: GatewayPlan, layout: Layout) -> list[Json]:
    return [render_cluster(c, eds_path=layout.eds(c.name)) for c in plan.clusters]


def render_endpoints(plan: GatewayPlan, snapshot: Snapshot) -> dict[str, Json]:
    """Cluster name -> ClusterLoadAssignment of its serving instances (sorted)."""
    out: dict[str, Json] = {}
    for cluster in plan.clusters:
        endpoints = [
            {
                "endpoint": {
                    "address": {
                        "socket_address": {"address": record.host, "port_value": record.port}
                    },
                    "hostname": record.instance,
                }
            }
            for record in sorted(
                snapshot.serving(cluster.name), key=lambda r: (r.instance, r.host, r.port)
            )
            if not record.component
        ]
        assignment: Json = {"cluster_name": cluster.name, "endpoints": []}
        if endpoints:
            assignment["endpoints"] = [{"lb_endpoints": endpoints}]
        out[cluster.name] = assignment
    return out


# --- the listener and bootstrap -----------------------------------------------------------


def _access_log() -> list[Json]:
    """One JSON line per request on stdout, so it joins the runtime's merged log stream."""
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": T_STDOUT_LOG,
                "log_format": {
                    "json_format": {
                        "timestamp": "%START_TIME%",
                        "level": "info",
                        "logger": "gateway",
                        "event": "request",
                        "method": "%REQ(:METHOD)%",
                        # Without the query string: it may carry API keys or reset tokens.
                        "path": "%PATH(NQ:ORIG_OR_PATH)%",
                        "status": "%RESPONSE_CODE%",
                        "details": "%RESPONSE_CODE_DETAILS%",
                        "flags": "%RESPONSE_FLAGS%",
                        "duration_ms": "%DURATION%",
                        "route": "%ROUTE_NAME%",
                        "upstream": "%UPSTREAM_HOST%",
                        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                        "request_id": "%REQ(X-REQUEST-ID)%",
                        "bytes_sent": "%BYTES_SENT%",
                    }
                },
            },
        }
    ]


def render_listener(plan: GatewayPlan, port: int, *, routes: Json) -> Json:
    """The listener. ``routes`` is either ``{"rds": ...}`` or ``{"route_config": ...}``."""
    hcm: Json = {
        "@type": T_HCM,
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "use_remote_address": True,
        # Path tricks (/public/../private, %2e%2e, //, %2F) are resolved or refused
        # before routing, so they can never reach a route they do not name.
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "server_name": "corral-gateway",
        "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}],
        "http_filters": http_filters(plan),
        "access_log": _access_log(),
        "local_reply_config": local_reply_config(),
        **routes,
    }
    return {
        "name": LISTENER_NAME,
        "address": {"socket_address": {"address": plan.address, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def node(plan: GatewayPlan) -> Json:
    """Who this Envoy is (names its stats and its xDS node)."""
    return {"id": f"corral-{plan.system}", "cluster": "corral"}


def render_bootstrap(plan: GatewayPlan, ports: Ports, layout: Layout) -> Json:
    """The bootstrap Envoy starts from: admin, the listener (RDS from a file), CDS file."""
    rds = {
        "rds": {
            "route_config_name": ROUTE_CONFIG_NAME,
            "config_source": {
                "path_config_source": {"path": layout.rds},
                "resource_api_version": "V3",
            },
        }
    }
    return {
        "node": node(plan),
        "admin": admin(layout.admin_socket),
        "layered_runtime": runtime_layers(),
        "dynamic_resources": {
            "cds_config": {
                "path_config_source": {"path": layout.cds},
                "resource_api_version": "V3",
            }
        },
        "static_resources": {
            "listeners": [
                render_listener(plan, ports.listener, routes=rds),
                stats_listener(ports.stats),
            ],
            "clusters": [admin_cluster(layout.admin_socket)],
        },
    }


@dataclass(frozen=True)
class GatewayConfig:
    """Everything Envoy reads, as dicts, and the file each goes to (relative to layout)."""

    bootstrap: Json
    rds: Json
    cds: Json
    eds: dict[str, Json]

    def files(self) -> dict[str, Json]:
        """Relative path -> document (the bootstrap is written once, at start)."""
        out = {"bootstrap.json": self.bootstrap, "rds.json": self.rds, "cds.json": self.cds}
        for cluster, doc in sorted(self.eds.items()):
            out[f"eds/{cluster}.json"] = doc
        return out


def render_eds_files(plan: GatewayPlan, snapshot: Snapshot) -> dict[str, Json]:
    return {
        name: discovery_response([assignment], T_ENDPOINTS)
        for name, assignment in render_endpoints(plan, snapshot).items()
    }


def render(plan: GatewayPlan, snapshot: Snapshot, *, ports: Ports, layout: Layout) -> GatewayConfig:
    """The whole gateway config for one plan and one registry snapshot."""
    return GatewayConfig(
        bootstrap=render_bootstrap(plan, ports, layout),
        rds=discovery_response([render_routes(plan)], T_ROUTE_CONFIG),
        cds=discovery_response(render_clusters(plan, layout), T_CLUSTER),
        eds=render_eds_files(plan, snapshot),
    )
