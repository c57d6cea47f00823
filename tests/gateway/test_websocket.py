"""WebSocket upgrades through a real Envoy to a real aiohttp echo upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_harness import Gateway, KeyPair, Upstream, start_gateway, write_jwks

ISSUER = "https://auth.test"
AUDIENCE = "ws"


def manifest(jwks: Path) -> str:
    return f"""
name: ws
services:
  live: {{command: "true"}}
gateway:
  jwt:
    main:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwks: {{file: {jwks}}}
  routes:
    - match: {{prefix: /ws, host: live.test}}
      service: live
      websocket: true
    - match: {{prefix: /ws, host: open.test}}
      service: live
      websocket: true
      auth: public
    - match: {{prefix: /ws}}
      service: live
      auth: public
"""


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair.generate("k1")


@pytest.fixture(scope="module")
def gateway(key: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("ws")
    upstream = Upstream.start("live-0")
    gw = start_gateway(
        manifest(write_jwks(folder / "jwks.json", [key])), folder, [upstream.record("live")]
    )
    yield gw
    gw.stop()
    upstream.kill()


def _token(key: KeyPair) -> str:
    now = int(time.time())
    return key.token({"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 300})


async def _upgrade(gateway: Gateway, host: str, headers: dict[str, str]) -> int:
    """The status of a WebSocket handshake on /ws (101 when it is accepted)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            gateway.url + "/ws",
            headers={
                "host": host,
                "connection": "upgrade",
                "upgrade": "websocket",
                "sec-websocket-version": "13",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                **headers,
            },
            timeout=aiohttp.ClientTimeout(total=5),
        ) as response,
    ):
        return response.status


async def test_websocket_route_echoes_messages(gateway: Gateway, key: KeyPair) -> None:
    """With a valid token, a client exchanges messages with the upstream through Envoy."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            gateway.url + "/ws",
            headers={"host": "live.test", "authorization": f"Bearer {_token(key)}"},
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
        ) as ws,
    ):
        for text in ("hello", "again", "x" * 100_000):
            await ws.send_str(text)
            reply = await ws.receive(timeout=5)
            assert reply.type is aiohttp.WSMsgType.TEXT
            assert reply.data == f"live-0:{text}"


async def test_websocket_upgrade_needs_a_token(gateway: Gateway, key: KeyPair) -> None:
    """JWT applies to the upgrade request: no or a bad token is 401, a public WS route is 101."""
    assert await _upgrade(gateway, "live.test", {}) == 401
    assert await _upgrade(gateway, "live.test", {"authorization": "Bearer nope"}) == 401
    token = {"authorization": f"Bearer {_token(key)}"}
    assert await _upgrade(gateway, "live.test", token) == 101
    assert await _upgrade(gateway, "open.test", {}) == 101


async def test_upgrade_refused_on_a_route_without_websocket(gateway: Gateway) -> None:
    """The same path on a route without ``websocket`` refuses the upgrade with 403
    problem+json, while plain HTTP there still works."""
    async with aiohttp.ClientSession() as session:
        async with session.get(
            gateway.url + "/ws",
            headers={
                "connection": "upgrade",
                "upgrade": "websocket",
                "sec-websocket-version": "13",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as response:
            assert response.status == 403, await response.text()
            assert response.headers["content-type"] == "application/problem+json"
            assert (await response.json(content_type=None))["title"] == "Forbidden"
        async with session.get(gateway.url + "/ws/plain") as plain:
            assert plain.status == 200
