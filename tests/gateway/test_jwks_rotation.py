"""Key rotation with a JWKS served by a service of the system, live in a running Envoy."""

from __future__ import annotations

import time
from pathlib import Path

from gateway_harness import KeyPair, Upstream, start_gateway, wait_for, write_jwks

ISSUER = "https://auth.test"
AUDIENCE = "rotation"
CACHE = 2.0
"""The JWKS cache duration configured below: Envoy re-fetches the keys this often."""

MANIFEST = f"""
name: rotation
services:
  auth: {{command: "true"}}
  api: {{command: "true"}}
gateway:
  jwt:
    main:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwks: {{service: auth, cache: {CACHE:g}s}}
  routes:
    - match: {{prefix: /}}
      service: api
"""


def _token(key: KeyPair) -> str:
    now = int(time.time())
    return key.token({"iss": ISSUER, "aud": AUDIENCE, "sub": key.kid, "iat": now, "exp": now + 300})


def test_key_rotation_without_restart(tmp_path: Path) -> None:
    """A -> A+B -> B served by the auth service: B passes and A is refused within the cache
    duration plus 5 s, with the same Envoy process throughout."""
    key_a, key_b = KeyPair.generate("a"), KeyPair.generate("b")
    jwks = write_jwks(tmp_path / "jwks.json", [key_a])
    auth = Upstream.start("auth-0", jwks=jwks)
    api = Upstream.start("api-0")
    gw = start_gateway(MANIFEST, tmp_path, [auth.record("auth"), api.record("api")])
    try:
        pid = gw.process.pid
        token_a, token_b = _token(key_a), _token(key_b)

        def status(token: str) -> int:
            return gw.client.get("/x", headers={"authorization": f"Bearer {token}"}).status_code

        # fast_listener: the first fetch runs in the background, so poll for it.
        wait_for(lambda: status(token_a) == 200, timeout=CACHE + 5, what="key A accepted")
        assert status(token_b) == 401

        write_jwks(jwks, [key_a, key_b])
        wait_for(lambda: status(token_b) == 200, timeout=CACHE + 5, what="key B accepted")
        assert status(token_a) == 200, "both keys are published: A still passes"

        write_jwks(jwks, [key_b])
        wait_for(lambda: status(_token(key_a)) == 401, timeout=CACHE + 5, what="key A refused")
        # token_a was verified before A was withdrawn: no verified-token cache keeps it alive.
        assert status(token_a) == 401, "a token verified before the rotation is refused too"
        assert status(token_b) == 200

        assert gw.process.pid == pid
        assert gw.process.poll() is None
    finally:
        gw.stop()
        auth.kill()
        api.kill()
