"""``--gateway-api``: HTTPRoutes that attach the system's gateway to a cluster's Gateway
(Gateway API, ``gateway.networking.k8s.io/v1``, standard channel). Pure.

The cluster's Gateway is the edge (its hostname, TLS, address); Corral's Envoy stays the
system's gateway behind it, with its JWT checks, rate limits, rewrites, retries and
per-route policies. So every rule sends to ``Service corral-gateway`` and nothing is
decided twice, but the edge learns which requests the system serves: one rule per
manifest route (in its order), matching its path (prefix -> ``PathPrefix``, both on
segment boundaries; exact -> ``Exact``; regex -> ``RegularExpression``, which Gateway API
leaves to the implementation) and its methods (one match per method). Header conditions
stay Envoy's: the edge matches more broadly, never more narrowly. Each rule carries the
route's timeout as ``timeouts.request`` (``0s``: none), so the edge never cuts a request
Envoy would still wait for (a live stream with ``timeout: 0s``; an Envoy-based edge
otherwise stops at 15 s).

Routes with a ``host`` go into an HTTPRoute of their own with that hostname (Gateway API
matches hosts per HTTPRoute; a port in the manifest's host is not part of it). An
HTTPRoute holds at most 16 rules (and fewer than 128 matches), so a longer list continues
in ``corral-gateway-2``...
"""

from __future__ import annotations

import re
from typing import Any

from corral.export._environment import GATEWAY_HOST
from corral.export._k8s_objects import metadata
from corral.export._model import ExportOptions, Note, Problem
from corral.plan import Plan, RoutePlan

GROUP = "gateway.networking.k8s.io"
MAX_RULES = 16
"""The HTTPRoute CRD's ``maxItems`` for ``spec.rules``."""
MAX_MATCHES = 127
"""The CRD's rule (CEL) for all the matches of one HTTPRoute: fewer than 128."""
_PATH_CHARACTERS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")
_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def gateway_duration(seconds: float) -> str:
    """Gateway API's duration (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``): 15 -> ``15s``, 1.5 ->
    ``1s500ms``, 0 -> ``0s``, 3600 -> ``1h``."""
    left = round(seconds * 1000)
    if left == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parent(reference: str) -> dict[str, str]:
    """``[namespace/]name`` -> a parentRef to that Gateway."""
    namespace, _, name = reference.rpartition("/")
    out = {"group": GROUP, "kind": "Gateway", "name": name}
    if namespace:
        out["namespace"] = namespace
    return out


def path_problems(plan: Plan) -> list[Problem]:
    """Prefix and exact paths the HTTPRoute CRD's rules refuse (its CEL validations:
    the characters of RFC 3986's path, no ``//``, dot segments or encoded slashes)."""
    out = []
    for route in plan.gateway.routes if plan.gateway else ():
        kind = "prefix" if route.prefix is not None else "exact"
        value = route.prefix if route.prefix is not None else route.exact
        if value is None:
            continue
        if (
            not _PATH_CHARACTERS.match(value)
            or any(bad in value for bad in _PATH_FORBIDDEN)
            or value.endswith(("/.", "/.."))
        ):
            out.append(
                Problem(
                    (*route.path, "match", kind),
                    f"--gateway-api: {value!r} is not a path Gateway API accepts "
                    "(RFC 3986 characters, no '//', dot segments or encoded '/')",
                    "write the path as the client sends it, percent-encoding other characters",
                )
            )
    return out


def _path(route: RoutePlan) -> dict[str, str]:
    if route.prefix is not None:
        return {"type": "PathPrefix", "value": route.prefix}
    if route.exact is not None:
        return {"type": "Exact", "value": route.exact}
    assert route.regex is not None
    return {"type": "RegularExpression", "value": route.regex}


def _rule(route: RoutePlan) -> dict[str, Any]:
    path = _path(route)
    matches = [{"path": path, "method": m} for m in route.methods] or [{"path": path}]
    # No rule ``name``: standard only from Gateway API v1.4, and ``timeouts`` (v1.2) is
    # all this needs; rules keep the manifest's order instead.
    return {
        "matches": matches,
        "backendRefs": [{"name": GATEWAY_HOST, "port": 80}],
        "timeouts": {"request": gateway_duration(route.timeout)},
    }


def http_routes(plan: Plan, options: ExportOptions, notes: list[Note]) -> list[dict[str, Any]]:
    """The HTTPRoutes for ``options.gateway_api`` (see the module docstring)."""
    gateway = plan.gateway
    assert gateway is not None
    assert options.gateway_api is not None
    by_host: dict[str | None, list[RoutePlan]] = {}
    for route in gateway.routes:
        host = route.host.rsplit(":", 1)[0] if route.host else None
        if route.host and host != route.host:
            notes.append(
                Note(
                    (*route.path, "match", "host"),
                    f"Gateway API hostnames have no port: the HTTPRoute matches {host}",
                )
            )
        by_host.setdefault(host, []).append(route)
    out: list[dict[str, Any]] = []
    hosts = sorted(by_host, key=lambda h: (h is not None, h or ""))
    for host in hosts:
        for rules in _chunks([_rule(r) for r in by_host[host]]):
            name = GATEWAY_HOST if not out else f"{GATEWAY_HOST}-{len(out) + 1}"
            spec: dict[str, Any] = {"parentRefs": [parent(options.gateway_api)]}
            if host is not None:
                spec["hostnames"] = [host]
            spec["rules"] = rules
            out.append(
                {
                    "apiVersion": f"{GROUP}/v1",
                    "kind": "HTTPRoute",
                    "metadata": metadata(plan, options, name, "gateway"),
                    "spec": spec,
                }
            )
    return out


def _chunks(rules: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rules in order, at most :data:`MAX_RULES` and :data:`MAX_MATCHES` matches per
    HTTPRoute (a route has at most 9 methods, so each rule fits)."""
    out: list[list[dict[str, Any]]] = [[]]
    for rule in rules:
        matches = sum(len(r["matches"]) for r in out[-1]) + len(rule["matches"])
        if len(out[-1]) == MAX_RULES or matches > MAX_MATCHES:
            out.append([])
        out[-1].append(rule)
    return out
