"""The clusters the renderer writes: what every upstream connection is held to."""

from __future__ import annotations

import sys

from corral import contract
from corral.gateway._envoy import T_HTTP_PROTOCOL_OPTIONS, X_HTTP_PROTOCOL_OPTIONS
from corral.gateway._render import render_cluster
from corral.manifest import parse
from corral.plan import resolve

MANIFEST = """name: shop
services:
  a: {command: "true"}
  b: {command: "true"}
gateway:
  routes:
    - {match: {prefix: /a}, service: a}
    - {match: {prefix: /b}, service: b}
"""


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def test_gateway_closes_idle_upstream_connections_before_the_service_does() -> None:
    """A request sent on a connection as the service closes it comes back 503 and a POST
    is never retried: the gateway must be the side that closes an idle connection."""
    plan = resolve(parse(MANIFEST, "/shop/corral.yaml"), python=sys.executable)
    assert plan.gateway is not None
    assert len(plan.gateway.clusters) == 2
    for cluster in plan.gateway.clusters:
        options = render_cluster(cluster, eds_path="/eds.json")["typed_extension_protocol_options"]
        http = options[X_HTTP_PROTOCOL_OPTIONS]
        assert http["@type"] == T_HTTP_PROTOCOL_OPTIONS
        idle = _seconds(http["common_http_protocol_options"]["idle_timeout"])
        assert 0 < idle < contract.IDLE_KEEP_ALIVE_SECONDS
