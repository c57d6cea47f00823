"""A service's internal endpoints (/metrics, /docs, /openapi.json, /redoc, /healthz,
/readyz, /corral/...) are not reachable through the gateway unless a route exposes them
(real Envoy, real upstreams)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from gateway_harness import Gateway

from corral.gateway._internal import refused_paths
from corral.manifest import parse
from corral.plan import resolve

MANIFEST = """
name: internals
services:
  a: {command: "true"}
  b: {command: "true"}
  c: {command: "true"}
gateway:
  routes:
    - match: {prefix: /auth}
      service: a
      rewrite: /
    - match: {prefix: /pub/}
      service: b
      rewrite: /
      expose: [/docs, /openapi.json]
    - match: {regex: "^/v[0-9]+/(.*)$"}
      service: c
      rewrite: "/\\\\1"
    - match: {prefix: /rides}
      service: b
    - match: {prefix: /}
      service: c
"""


REFUSED = [
    # ridehail's shape: a prefix rewritten to the service's root
    "/auth/metrics",
    "/auth/docs",
    "/auth/docs/oauth2-redirect",
    "/auth/openapi.json",
    "/auth/redoc",
    "/auth/healthz",
    "/auth/readyz",
    "/auth/corral/circuits",
    "/auth/corral",
    # spelled otherwise, landing on the same upstream path
    "/auth/metrics?format=prometheus",
    "/auth/metrics/",
    "/auth//metrics",
    "/auth/x/../metrics",
    "/auth/%6detrics",
    "/auth/openapi%2Ejson",
    "/%61uth/metrics",
    # a route that exposes some endpoints, not the others
    "/pub/metrics",
    "/pub/corral/circuits",
    # a regex rewrite with a capture group
    "/v1/metrics",
    "/v2/corral/circuits",
    # the catch-all route, no rewrite
    "/metrics",
    "/docs",
    "/healthz",
    "/corral/circuits",
]


@pytest.mark.parametrize("path", REFUSED)
def test_internal_endpoints_are_not_routed(gateway: Gateway, path: str) -> None:
    """Each answers the problem+json 404 of a path no route matches."""
    response = gateway.client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "no route matches this request"


@pytest.mark.parametrize(
    ("path", "name", "upstream_path"),
    [
        ("/auth/login", "a", "/login"),
        ("/%61uth/login", "a", "/login"),  # decoded before routing, as by the service
        ("/auth/metrics-report", "a", "/metrics-report"),
        ("/auth/users/docs", "a", "/users/docs"),
        ("/pub/docs", "b", "/docs"),
        ("/pub/openapi.json", "b", "/openapi.json"),
        ("/v1/items", "c", "/items"),
        ("/rides/metrics", "b", "/rides/metrics"),
        ("/anything", "c", "/anything"),
    ],
)
def test_other_paths_still_reach_their_service(
    gateway: Gateway, path: str, name: str, upstream_path: str
) -> None:
    """A normal route still answers 200 from its service, and a route's `expose` lets
    exactly those endpoints through."""
    response = gateway.client.get(path)
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["path"]) == (name, upstream_path)


HEAD = 'name: x\nservices:\n  a: {command: "true"}\ngateway:\n  routes:\n'


def _refuses(route_yaml: str, path: str) -> bool:
    """Whether the rendered expression refuses ``path`` on the route (Python's re reads
    these expressions as RE2 does)."""

    text = (
        f'name: x\nservices:\n  a: {{command: "true"}}\ngateway:\n  routes:\n    - {route_yaml}\n'
    )
    gateway = resolve(parse(text, Path("/x/corral.yaml")), python=sys.executable).gateway
    assert gateway is not None
    expression = refused_paths(gateway.routes[0])
    return expression is not None and re.search(expression, path) is not None


@pytest.mark.parametrize(
    ("route", "path", "refused"),
    [
        ("{match: {prefix: /stats}, service: a, rewrite: /metrics}", "/stats", True),
        ("{match: {prefix: /stats}, service: a, rewrite: /metrics}", "/stats/x", False),
        ("{match: {prefix: /m}, service: a, rewrite: /me}", "/m/trics", False),
        ("{match: {prefix: /metrics}, service: a}", "/metrics", True),
        ("{match: {prefix: /metrics}, service: a}", "/metrics/today", False),
        ("{match: {prefix: /a/}, service: a, rewrite: /}", "/a/redoc", True),
        ("{match: {prefix: /a/}, service: a, rewrite: /b/}", "/a/metrics", False),
        ("{match: {exact: /m}, service: a, rewrite: /metrics, expose: [/metrics]}", "/m", False),
        ("{match: {prefix: /}, service: a, expose: [/corral]}", "/corral/circuits", False),
        ("{match: {prefix: /}, service: a, expose: [/corral]}", "/metrics", True),
        ("{match: {regex: '^/x/(.*)$'}, service: a, rewrite: '/\\\\1'}", "/x/a/metrics", True),
        ("{match: {regex: '^/x/.*$'}, service: a}", "/x/metrics", False),
    ],
)
def test_which_requests_a_route_refuses(route: str, path: str, refused: bool) -> None:
    """Exactly the paths whose upstream path is internal and not exposed (a regex
    rewrite with capture groups refuses any path ending in one, conservatively)."""
    assert _refuses(route, path) is refused
