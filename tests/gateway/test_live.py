"""Live updates: registry changes reach Envoy through file xDS, draining waits for Envoy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from gateway_harness import Upstream, start_gateway

from corral.gateway import live_routes
from corral.runtime.registry import InstanceState, Registry

MANIFEST = """
name: live
services:
  web: {command: "true"}
gateway:
  routes:
    - match: {prefix: /}
      service: web
"""


async def test_registry_changes_apply_live_and_drain_confirms(
    upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """New serving instances get traffic at once; a drained one is gone before stop returns."""
    a, b, c = (upstreams[n] for n in ("a", "b", "c"))
    gw = start_gateway(MANIFEST, tmp_path, [a.record("web")])
    registry = Registry()
    registry.put(a.record("web"))
    gw.addon.follow(registry)
    try:
        async with httpx.AsyncClient(base_url=gw.url) as client:
            # Scale 1 -> 3: both new instances serve within a second of being ready.
            registry.put(b.record("web"))
            registry.put(c.record("web"))
            took = await gw.addon.wait_applied(registry.snapshot(), timeout=1.0)
            assert took < 1.0
            seen = {(await client.get("/")).json()["name"] for _ in range(30)}
            assert seen == {"a", "b", "c"}

            # Not ready yet -> no traffic.
            registry.update("b", ready=False, state=InstanceState.STARTING)
            await gw.addon.wait_applied(registry.snapshot(), timeout=1.0)
            assert {(await client.get("/")).json()["name"] for _ in range(20)} == {"a", "c"}

            # Drain c under a steady client: no request fails, and once before_instance_stop
            # returns Envoy no longer has c, so killing it cannot fail a request.
            failures = 0
            stop = asyncio.Event()

            async def steady() -> None:
                nonlocal failures
                while not stop.is_set():
                    if (await client.get("/")).status_code != 200:
                        failures += 1

            runner = asyncio.create_task(steady())
            record = registry.update("c", state=InstanceState.DRAINING).get("c")
            assert record is not None
            started = time.perf_counter()
            await gw.addon.before_instance_stop(record)
            assert time.perf_counter() - started < 1.0
            assert f"127.0.0.1:{c.port}" not in gw.endpoints()["web"]
            stop.set()
            await runner
            assert failures == 0
            assert {(await client.get("/")).json()["name"] for _ in range(20)} == {"a"}
    finally:
        await gw.addon.stop()
        gw.stop()


async def test_live_routes_and_route_change(upstreams: dict[str, Upstream], tmp_path: Path) -> None:
    """live_routes shows Envoy's table; a plan with a new route applies without a restart."""
    import dataclasses

    from gateway_harness import manifest_from

    gw = start_gateway(MANIFEST, tmp_path, [upstreams["a"].record("web")])
    try:
        rows = live_routes(gw.admin_socket)
        assert [(r["name"], r["match"], r["service"]) for r in rows] == [
            ("0-web/internal", "prefix /", None),  # the service's /metrics, /docs...: 404
            ("0-web", "prefix /", "web"),
            ("0-web/unsafe-methods", "prefix /", "web"),
            ("corral-not-found", "prefix /", None),
        ]
        _, plan = manifest_from(
            MANIFEST.replace("prefix: /}", "prefix: /v2}\n      rewrite: /"), tmp_path / "v2"
        )
        assert plan.gateway is not None
        pid = gw.process.pid
        gw.addon.update_plan(dataclasses.replace(plan.gateway))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if {r["match"] for r in live_routes(gw.admin_socket)} == {"prefix /v2", "prefix /"}:
                break
            await asyncio.sleep(0.005)
        assert gw.client.get("/v2/hello").json()["path"] == "/hello"
        assert gw.client.get("/hello").status_code == 404
        assert gw.process.pid == pid
        assert gw.process.poll() is None
    finally:
        gw.stop()


async def test_admin_socket_under_a_deep_state_directory(
    upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """A state directory too deep for a Unix socket path (107 bytes) puts the admin socket
    in a private short directory instead: Envoy serves, the admin API answers there, and
    the directory is removed when the gateway stops."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    gw = start_gateway(MANIFEST, deep, [upstreams["a"].record("web")])
    try:
        socket = Path(gw.admin_socket)
        assert len(str(socket).encode()) <= 107
        assert not socket.is_relative_to(deep)
        assert socket.parent.stat().st_mode & 0o777 == 0o700
        assert socket.stat().st_mode & 0o777 == 0o600
        assert gw.client.get("/").status_code == 200
        assert {r["name"]: r["service"] for r in live_routes(str(socket))}["0-web"] == "web"
    finally:
        gw.stop()
        await gw.addon.stop()
    assert not socket.parent.exists()
