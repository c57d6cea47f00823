"""The gateway section: located diagnostics for bad input, and Envoy's verdict mapped back."""

from __future__ import annotations

import sys

import pytest

from corral.gateway import validate_gateway
from corral.manifest import ManifestError, parse
from corral.plan import resolve

HEAD = """name: shop
services:
  orders: {command: "true"}
  auth: {command: "true"}
gateway:
"""

CASES = [
    (
        "  routes:\n    - match: {prefix: /o}\n      service: order\n",
        8,
        "gateway.routes[0].service: unknown service 'order' (did you mean 'orders'?)",
    ),
    (
        "  routes:\n    - match: {prefix: /o}\n      service: orders\n      auth: {jwt: main}\n",
        9,
        "gateway.routes[0].auth.jwt: undefined JWT provider 'main'",
    ),
    (
        "  jwt:\n    main:\n      issuer: x\n      audiences: []\n      jwks: {service: auth}\n",
        9,
        "gateway.jwt.main.audiences: a JWT provider needs at least one audience",
    ),
    (
        "  jwt:\n    main: {issuer: x, audiences: [a], jwks: {service: auth, file: k.json}}\n",
        7,
        "jwks needs exactly one of 'service' or 'file'",
    ),
    (
        "  routes:\n    - match: {prefix: /o}\n      service: orders\n      retries: 3\n",
        9,
        "gateway.routes[0].retries: unknown key 'retries'",
    ),
    (
        "  routes:\n    - match: {prefix: o}\n      service: orders\n",
        7,
        "a path must start with '/'",
    ),
    (
        "  routes:\n    - match: {prefix: /o, exact: /o}\n      service: orders\n",
        7,
        "a route matches one of prefix, exact or regex",
    ),
    (
        "  routes:\n    - match: {prefix: /o}\n      service: orders\n"
        "      rate_limit: {requests: 5, key: subject}\n      auth: public\n",
        9,
        "rate limit keyed by JWT subject on a route without JWT auth",
    ),
    (
        "  services:\n    orders: {load_balancing: ring_hash}\n",
        7,
        "ring_hash needs 'hash_header'",
    ),
    (
        "  services:\n    ordrs: {}\n",
        7,
        "gateway.services.ordrs: unknown service 'ordrs'",
    ),
    (
        "  routes:\n    - match: {prefix: /o, methods: [FETCH]}\n      service: orders\n",
        7,
        "unknown HTTP method 'FETCH'",
    ),
    (
        "  routes:\n    - match: {exact: /orders/metrics}\n      service: orders\n"
        "      rewrite: /metrics\n",
        7,
        "gateway.routes[0]: every request on this route reaches /metrics, an internal endpoint"
        " of 'orders', which the gateway does not forward (to publish it, add expose: [/metrics]",
    ),
    (
        "  routes:\n    - match: {prefix: /debug}\n      service: orders\n"
        "      rewrite: /corral/\n",
        7,
        "every request on this route reaches /corral, an internal endpoint",
    ),
    (
        "  routes:\n    - match: {prefix: /o}\n      service: orders\n      expose: [/metric]\n",
        9,
        "'/metric' is not an internal endpoint: did you mean '/metrics'?",
    ),
]


@pytest.mark.parametrize(("body", "line", "message"), CASES)
def test_bad_gateway_sections_are_located(body: str, line: int, message: str) -> None:
    """Each mistake is reported with its line and a specific message."""
    with pytest.raises(ManifestError) as caught:
        parse(HEAD + body, "corral.yaml")
    rendered = [str(d) for d in caught.value.diagnostics]
    assert any(f"corral.yaml:{line}:" in r and message in r for r in rendered), rendered


def test_envoy_rejection_points_at_the_route() -> None:
    """A regex Python accepts but Envoy's RE2 rejects is reported at its route's line."""
    text = HEAD + (
        "  routes:\n"
        "    - match: {prefix: /ok}\n"
        "      service: orders\n"
        "    - match: {regex: '^/a(?=b)'}\n"
        "      service: orders\n"
    )
    manifest = parse(text, "corral.yaml")
    problems = validate_gateway(manifest, resolve(manifest, python=sys.executable))
    assert len(problems) == 1, problems
    assert problems[0].line == 9
    assert problems[0].path == ("gateway", "routes", 1)
    assert "Envoy rejects this route" in problems[0].message


def test_valid_gateway_has_no_envoy_problems() -> None:
    """A good gateway section passes Envoy's validator."""
    manifest = parse(
        HEAD + "  routes:\n    - match: {prefix: /}\n      service: orders\n", "c.yaml"
    )
    assert validate_gateway(manifest, resolve(manifest, python=sys.executable)) == []


def test_a_route_that_exposes_its_internal_endpoint_is_valid() -> None:
    """`expose` is how a route opts in: the same exact route is accepted with it."""
    text = HEAD + (
        "  routes:\n    - match: {exact: /orders/metrics}\n      service: orders\n"
        "      rewrite: /metrics\n      expose: [/metrics]\n"
    )
    plan = resolve(parse(text, "corral.yaml"), python=sys.executable)
    assert plan.gateway is not None
    assert plan.gateway.routes[0].expose == ("/metrics",)
