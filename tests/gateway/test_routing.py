"""Routing matrix through a real Envoy: prefix, exact, regex, host, method, header, rewrite."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_harness import Gateway, Upstream, start_gateway

MANIFEST = """
name: routing
services:
  a: {command: "true"}
  b: {command: "true"}
  c: {command: "true"}
gateway:
  routes:
    - match: {exact: /exact}
      service: b
    - match: {prefix: /api/b, methods: [POST]}
      service: b
    - match: {prefix: /api/b}
      service: a
      rewrite: /
    - match: {regex: "^/v[0-9]+/items/([0-9]+)$"}
      service: c
      rewrite: /items/\\1
    - match: {prefix: /tenant, headers: {x-tenant: blue}}
      service: b
    - match: {prefix: /tenant}
      service: c
    - match: {prefix: /, host: api.example.com}
      service: c
    - match: {prefix: /static/}
      service: b
      rewrite: /assets/
    - match: {prefix: /}
      service: a
"""


@pytest.mark.parametrize(
    ("method", "path", "headers", "name", "upstream_path"),
    [
        ("GET", "/exact", {}, "b", "/exact"),
        ("GET", "/exact/more", {}, "a", "/exact/more"),
        ("POST", "/api/b/x", {}, "b", "/api/b/x"),
        ("GET", "/api/b/x?q=1", {}, "a", "/x?q=1"),
        ("GET", "/api/b", {}, "a", "/"),
        ("GET", "/api/bx", {}, "a", "/api/bx"),
        ("GET", "/v2/items/42", {}, "c", "/items/42"),
        ("GET", "/v2/items/x", {}, "a", "/v2/items/x"),
        ("GET", "/tenant/1", {"x-tenant": "blue"}, "b", "/tenant/1"),
        ("GET", "/tenant/1", {"x-tenant": "red"}, "c", "/tenant/1"),
        ("GET", "/anything", {"host": "api.example.com"}, "c", "/anything"),
        ("GET", "/anything", {"host": "api.example.com:8443"}, "c", "/anything"),
        ("GET", "/anything", {"host": "other.example.com"}, "a", "/anything"),
        ("GET", "/static/app.js", {}, "b", "/assets/app.js"),
    ],
)
def test_routing_matrix(
    gateway: Gateway, method: str, path: str, headers: dict[str, str], name: str, upstream_path: str
) -> None:
    """Each request reaches the service and path its first matching route names."""
    response = gateway.client.request(method, path, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["path"]) == (name, upstream_path)


def test_unknown_path_is_problem_404(upstreams: dict[str, Upstream], tmp_path: Path) -> None:
    """A path no route matches gets a problem+json 404, never an upstream."""
    text = MANIFEST.split("    - match: {prefix: /}\n")[0]
    records = [upstreams[n].record(n) for n in ("a", "b", "c")]
    gw = start_gateway(text, tmp_path, records)
    try:
        response = gw.client.get("/nowhere")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert len(problem.pop("request_id")) >= 32  # Envoy's UUID, for support to quote
        assert problem == {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "no route matches this request",
        }
    finally:
        gw.stop()
