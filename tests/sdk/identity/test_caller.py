"""A service answers only to identity it verified itself: claim headers from the request
are never trusted, a forwarded token is, once checked (in process, real tokens)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, Request

from corral import contract
from corral.sdk import PROBLEM_JSON, Service, SettingsError
from corral.sdk.identity import (
    Caller,
    Identity,
    OptionalCaller,
    current_identity,
    requires_role,
)
from corral.sdk.testing import TokenIssuer, serve_in_process

FORGED = {"x-corral-claim-sub": "admin-1", "x-corral-claim-role": "admin"}


def make_service() -> Service:
    svc = Service("rides")

    @svc.get("/headers")
    async def headers(request: Request) -> dict[str, str]:
        """What code that reads the gateway's claim headers itself would see."""
        return {k: v for k, v in request.headers.items() if k.startswith("x-corral-claim-")}

    @svc.get("/me")
    async def me(caller: Caller) -> dict[str, object]:
        current = current_identity()
        assert current is caller
        return {"subject": caller.subject, "roles": sorted(caller.roles)}

    @svc.get("/maybe")
    async def maybe(caller: OptionalCaller) -> dict[str, str | None]:
        return {"subject": caller.subject if caller else None}

    @svc.get("/admin")
    async def admin(caller: Annotated[Identity, Depends(requires_role("admin"))]) -> str:
        return caller.subject

    return svc


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer(forward_claims=("sub", "role")) as made:
        yield made


async def test_forged_claim_headers_are_dropped_and_prove_nothing(issuer: TokenIssuer) -> None:
    """Straight to the port with ``x-corral-claim-role: admin`` and no token: the
    handler sees no claim header, and a route needing a caller answers 401 problem+json
    with a Bearer challenge."""
    async with serve_in_process(make_service(), env=issuer.env()) as client:
        seen = (await client.get("/headers", headers=FORGED)).json()
        refused = await client.get("/me", headers=FORGED)
        admin = await client.get("/admin", headers=FORGED)
    assert seen == {}
    assert refused.status_code == 401
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["detail"] == "the request carries no bearer token"
    assert admin.status_code == 401


async def test_a_verified_token_sets_the_caller_and_the_claim_headers(
    issuer: TokenIssuer,
) -> None:
    """With a valid token the caller is its subject, and the claim headers are the
    token's (as the gateway writes them), whatever headers the request brought."""
    token = issuer.headers("rider-7", roles=["rider"], role="rider")
    async with serve_in_process(make_service(), env=issuer.env()) as client:
        seen = (await client.get("/headers", headers={**FORGED, **token})).json()
        me = (await client.get("/me", headers=token)).json()
        maybe = (await client.get("/maybe", headers=token)).json()
        anonymous = (await client.get("/maybe")).json()
    assert seen == {"x-corral-claim-sub": "rider-7", "x-corral-claim-role": "rider"}
    assert me == {"subject": "rider-7", "roles": ["rider"]}
    assert maybe == {"subject": "rider-7"}
    assert anonymous == {"subject": None}


async def test_roles_are_checked(issuer: TokenIssuer) -> None:
    """``requires_role``: 403 problem+json naming the role, 200 with it."""
    async with serve_in_process(make_service(), env=issuer.env()) as client:
        rider = await client.get("/admin", headers=issuer.headers("r", roles=["rider"]))
        admin = await client.get("/admin", headers=issuer.headers("a", roles=["admin"]))
    assert rider.status_code == 403
    assert rider.json()["detail"] == "this needs the role admin"
    assert admin.json() == "a"


async def test_a_bad_token_is_refused_where_a_caller_is_needed_only(issuer: TokenIssuer) -> None:
    """An expired token: 401 saying so on a route that needs a caller; a public route
    still answers (a login called with a stale token must work)."""
    stale = issuer.headers("rider-7", expires_in=-3600)
    async with serve_in_process(make_service(), env=issuer.env()) as client:
        refused = await client.get("/me", headers=stale)
        public = await client.get("/maybe", headers=stale)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "expired" in refused.json()["detail"]
    assert public.json() == {"subject": None}


async def test_without_providers_no_identity_is_accepted(issuer: TokenIssuer) -> None:
    """No CORRAL_IDENTITY (no gateway JWT providers): a token proves nothing, claim
    headers are dropped all the same, and the 401 says what is missing."""
    async with serve_in_process(make_service()) as client:
        refused = await client.get("/me", headers=issuer.headers("rider-7"))
        seen = (await client.get("/headers", headers=FORGED)).json()
    assert refused.status_code == 401
    assert contract.IDENTITY in refused.json()["detail"]
    assert seen == {}


async def test_keys_that_cannot_be_fetched_answer_503(tmp_path: Path) -> None:
    """A provider whose keys cannot be read: 503 with Retry-After (not 401: the token
    may be fine), saying why."""
    provider = {
        "name": "main",
        "issuer": "https://issuer.test",
        "audiences": ["corral-test"],
        "jwks": {"file": str(tmp_path / "missing.json")},
    }
    env = {contract.IDENTITY: json.dumps({"providers": [provider]})}
    with TokenIssuer() as issuer:
        async with serve_in_process(make_service(), env=env) as client:
            answer = await client.get("/me", headers=issuer.headers("u"))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "cannot be fetched" in answer.json()["detail"]


async def test_a_malformed_identity_variable_stops_the_start() -> None:
    """CORRAL_IDENTITY that does not parse is a settings error naming the variable."""
    with pytest.raises(SettingsError, match=contract.IDENTITY):
        async with serve_in_process(make_service(), env={contract.IDENTITY: '{"providers": 1}'}):
            pass
