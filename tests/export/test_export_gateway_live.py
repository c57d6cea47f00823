"""The exported gateway config run by a real Envoy: clusters resolved through DNS
(``localhost`` standing in for the platform's service names), and the readiness health
check the export adds keeping an instance whose /readyz answers 503 out of traffic, as
the registry does under ``corral up``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from export_helpers import free_port, wait_for

from corral.export._gateway import render_gateway
from corral.gateway import envoy_binary
from corral.manifest import parse
from corral.plan import resolve

pytestmark = pytest.mark.integration

UPSTREAM = Path(__file__).resolve().parents[1] / "gateway" / "upstream.py"
MANIFEST = """
name: live
services:
  web: {command: "python upstream.py env", readiness: {http: /readyz, period: 200ms}}
gateway:
  routes:
    - {match: {prefix: /web}, service: web}
"""


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


def _local(
    config: dict[str, Any], *, listener: int, stats: int, upstream: int, socket_path: str
) -> str:
    """The exported config on this machine: free ports, a private admin socket; the
    cluster keeps resolving a name (``web`` -> ``localhost``) through DNS."""
    resources = config["static_resources"]
    gateway, stats_listener = resources["listeners"]
    gateway["address"]["socket_address"]["port_value"] = listener
    stats_listener["address"]["socket_address"]["port_value"] = stats
    for cluster in resources["clusters"]:
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                address = endpoint["endpoint"]["address"]
                if "socket_address" in address:
                    address["socket_address"] = {"address": "localhost", "port_value": upstream}
                else:
                    address["pipe"]["path"] = socket_path
    config["admin"]["address"]["pipe"]["path"] = socket_path
    return json.dumps(config)


@pytest.fixture
def upstream() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(port), "web-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/__ready") == 200, "the upstream")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_exported_gateway_routes_by_dns_and_follows_readiness(
    upstream: int, tmp_path: Path
) -> None:
    """Envoy serves the exported config: a request reaches the instance DNS resolved;
    once the instance's readiness fails Envoy stops sending to it (503), and takes it
    back when it recovers."""
    plan = resolve(parse(MANIFEST, tmp_path / "corral.yaml"), python=sys.executable)
    config = json.loads(render_gateway(plan, hosts={"web": "web"}))
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "web"]
    assert cluster["type"] == "STRICT_DNS"
    assert cluster["health_checks"][0]["http_health_check"]["path"] == "/readyz"
    listener, stats = free_port(), free_port()
    path = tmp_path / "envoy.json"
    path.write_text(
        _local(
            config,
            listener=listener,
            stats=stats,
            upstream=upstream,
            socket_path=str(tmp_path / "a.sock"),
        )
    )
    envoy = subprocess.Popen(
        [envoy_binary(), "-c", str(path), "--disable-hot-restart", "--log-level", "warn"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "envoy.log").open("wb"),
    )
    gateway = f"http://127.0.0.1:{listener}/web/x"
    try:
        wait_for(lambda: _status(f"http://127.0.0.1:{stats}/ready") == 200, "envoy ready")
        wait_for(lambda: _status(gateway) == 200, "a request through the gateway")
        assert _status(f"http://127.0.0.1:{stats}/stats/prometheus") == 200
        httpx.post(f"http://127.0.0.1:{upstream}/__control/unhealthy", timeout=2.0)
        wait_for(lambda: _status(gateway) == 503, "the instance out of traffic")
        httpx.post(f"http://127.0.0.1:{upstream}/__control/ok", timeout=2.0)
        wait_for(lambda: _status(gateway) == 200, "the instance back in traffic")
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)
