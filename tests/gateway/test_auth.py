"""JWT authentication, roles, claim headers and path tricks through a real Envoy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import Gateway, KeyPair, Upstream, manifest_from, start_gateway, write_jwks

from corral.gateway._filters import jwt_authn

ISSUER = "https://auth.test"
AUDIENCE = "ridehail"


def manifest(jwks: Path) -> str:
    return f"""
name: auth
services:
  a: {{command: "true"}}
  b: {{command: "true"}}
gateway:
  jwt:
    main:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwks: {{file: {jwks}}}
      forward_claims: [sub, email]
      clock_skew: 0s
  routes:
    - match: {{prefix: /public}}
      service: a
      auth: public
    - match: {{prefix: /admin}}
      service: b
      auth: {{roles: [admin]}}
    - match: {{prefix: /tenant}}
      service: b
      auth: {{claims: {{tenant: blue}}}}
    - match: {{prefix: /private}}
      service: b
    - match: {{prefix: /}}
      service: b
"""


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair.generate("k1")


@pytest.fixture(scope="module")
def gateway(
    upstreams: dict[str, Upstream], key: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("auth")
    jwks = write_jwks(folder / "jwks.json", [key])
    gw = start_gateway(
        manifest(jwks), folder, [upstreams["a"].record("a"), upstreams["b"].record("b")]
    )
    yield gw
    gw.stop()


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())


def test_valid_token_passes_and_claims_forwarded(gateway: Gateway, key: KeyPair) -> None:
    """A valid token reaches the service, which sees verified claims as headers, and the
    token itself: services verify it again (claim headers alone prove nothing)."""
    response = gateway.client.get("/private/x", headers=bearer(key.token(claims(email="u@x.test"))))
    assert response.status_code == 200, response.text
    headers = response.json()["headers"]
    assert headers["x-corral-claim-sub"] == "user-1"
    assert headers["x-corral-claim-email"] == "u@x.test"
    assert headers["authorization"].startswith("Bearer ")


def test_client_supplied_claim_headers_are_stripped(gateway: Gateway, key: KeyPair) -> None:
    """A client cannot forge x-corral-claim-* headers, on public or protected routes."""
    forged = {"x-corral-claim-sub": "admin", "x-corral-claim-role": "admin"}
    public = gateway.client.get("/public/x", headers=forged).json()["headers"]
    assert not any(h.startswith("x-corral-claim-") for h in public)
    private = gateway.client.get(
        "/private/x", headers={**forged, **bearer(key.token(claims()))}
    ).json()["headers"]
    assert private["x-corral-claim-sub"] == "user-1"
    assert "x-corral-claim-role" not in private


def _bad_tokens(key: KeyPair) -> dict[str, str]:
    now = int(time.time())
    other = KeyPair.generate("k1")  # same kid, different key
    good = key.token(claims())
    head, _payload, signature = good.split(".")
    tampered_payload = _b64(json.dumps(claims(sub="someone-else")).encode())
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    hs_signing_input = _unsigned(hs_header, claims())
    hs_signature = _b64(
        hmac.new(key.public_pem(), hs_signing_input.encode(), hashlib.sha256).digest()
    )
    return {
        "expired": key.token(claims(exp=now - 600, iat=now - 1200)),
        "not yet valid": key.token(claims(nbf=now + 600)),
        "wrong issuer": key.token(claims(iss="https://evil.test")),
        "wrong audience": key.token(claims(aud="other-system")),
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, claims()) + ".",
        "HS256 with the public key": hs_signing_input + "." + hs_signature,
        "tampered payload": f"{head}.{tampered_payload}.{signature}",
        "unknown kid": key.token(claims(), kid="nope"),
        "signed by another key": other.token(claims()),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not yet valid",
        "wrong issuer",
        "wrong audience",
        "alg none",
        "HS256 with the public key",
        "tampered payload",
        "unknown kid",
        "signed by another key",
        "garbage",
        "missing",
    ],
)
def test_bad_tokens_are_401_problem_json(gateway: Gateway, key: KeyPair, case: str) -> None:
    """Every kind of bad or missing token is refused with a problem+json 401."""
    headers = {} if case == "missing" else bearer(_bad_tokens(key)[case])
    response = gateway.client.get("/private/x", headers=headers)
    assert response.status_code == 401, (case, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"
    assert problem["type"] == "about:blank"


def test_token_in_the_query_string_is_not_accepted(gateway: Gateway, key: KeyPair) -> None:
    """Only the Authorization header carries a token: ?access_token= (Envoy's default
    second place) would leak bearer tokens into access logs."""
    token = key.token(claims())
    assert gateway.client.get("/private/x", headers=bearer(token)).status_code == 200
    response = gateway.client.get("/private/x", params={"access_token": token})
    assert response.status_code == 401


def test_catch_all_route_requires_a_token(gateway: Gateway) -> None:
    """A route without an auth key is protected by default when a provider exists."""
    assert gateway.client.get("/somewhere").status_code == 401


def test_missing_role_is_403(gateway: Gateway, key: KeyPair) -> None:
    """A valid token without the required role is 403; with it, 200."""
    response = gateway.client.get("/admin/x", headers=bearer(key.token(claims(roles=["rider"]))))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Forbidden"
    ok = gateway.client.get("/admin/x", headers=bearer(key.token(claims(roles=["rider", "admin"]))))
    assert ok.status_code == 200


def test_required_claim(gateway: Gateway, key: KeyPair) -> None:
    """A required claim must hold the configured value."""
    assert (
        gateway.client.get("/tenant", headers=bearer(key.token(claims(tenant="red")))).status_code
        == 403
    )
    assert gateway.client.get("/tenant", headers=bearer(key.token(claims()))).status_code == 403
    assert (
        gateway.client.get("/tenant", headers=bearer(key.token(claims(tenant="blue")))).status_code
        == 200
    )


@pytest.mark.parametrize(
    "path",
    [
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/%2E%2E/private/x",
        "/public/.%2e/private/x",
        "/public%2F..%2Fprivate/x",
        "/public/..%2Fprivate/x",
        "/public/..%2fprivate/x",
        "//private/x",
        "/public//../private/x",
        "/public/./../private/x",
        "/public/%2e%2e%2fprivate/x",
    ],
)
def test_path_tricks_never_reach_protected_route(gateway: Gateway, path: str) -> None:
    """Dot segments, encoded dots/slashes and double slashes cannot bypass auth."""
    with httpx.Client() as raw:
        request = raw.build_request("GET", gateway.url + "/")
        request.url = request.url.copy_with(raw_path=path.encode())
        response = raw.send(request)
    if response.status_code == 200:
        # Normalization kept it under /public: served by the public route, still public.
        body = response.json()
        assert body["name"] == "a", (path, body)
        assert body["path"].startswith("/public/"), (path, body)
    else:
        assert response.status_code in (400, 401), (path, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_access_log_omits_the_query_string(gateway: Gateway, key: KeyPair) -> None:
    """Query strings (API keys, reset tokens) never reach the access log; the path does."""
    import time as _time

    gateway.client.get("/public/logged", params={"reset_token": "s3cr3t-token-value"})
    deadline = _time.monotonic() + 10
    paths: list[str] = []
    while not paths and _time.monotonic() < deadline:
        text = gateway.log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("{") and "/public/logged" in line:
                paths.append(str(json.loads(line)["path"]))
        _time.sleep(0.05)
    assert paths == ["/public/logged"], text[-600:]
    assert "s3cr3t-token-value" not in text


PROVIDERS = """
name: t
services:
  a: {{command: [python, -c, pass], port: 9000}}
gateway:
  jwt:
    main: {{issuer: https://main.test, audiences: [t], jwks: {{file: {jwks}}}}}
    other: {{issuer: https://other.test, audiences: [t], jwks: {{file: {jwks}}}}}
  routes:
    - match: {{prefix: /x}}
      service: a
      auth: {{jwt: main{main}}}
    - match: {{prefix: /y}}
      service: a
      auth: {{jwt: other{other}}}
"""


@pytest.mark.parametrize(
    ("main", "other", "in_metadata"),
    [
        ("", "", set()),
        (", roles: [admin]", "", {"main"}),
        ("", ", claims: {tenant: blue}", {"other"}),
        (", roles: [admin]", ", claims: {tenant: blue}", {"main", "other"}),
    ],
)
def test_verified_payloads_go_to_metadata_only_for_providers_rbac_reads(
    tmp_path: Path, main: str, other: str, in_metadata: set[str]
) -> None:
    """Envoy builds a metadata copy of every verified payload it is asked to: rendered
    only for the providers some route checks roles or claims of (RBAC reads it there),
    while issuer and audiences stay checked for every provider."""
    jwks = write_jwks(tmp_path / "jwks.json", [KeyPair.generate("k")])
    text = PROVIDERS.format(jwks=jwks, main=main, other=other)
    _, plan = manifest_from(text, tmp_path)
    assert plan.gateway is not None
    providers = jwt_authn(plan.gateway)["providers"]
    assert {name for name, p in providers.items() if "payload_in_metadata" in p} == in_metadata
    for name, provider in providers.items():
        assert provider["issuer"] == f"https://{name}.test"
        assert provider["audiences"] == ["t"]
