"""The dashboard's browser session: only the dashboard's own page may start or end it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI

from corral.api._browser import SessionCookieAuth, browser_router, cookie_name
from corral.api._logins import BrowserLogins
from corral.api._problems import install

ORIGIN = "http://127.0.0.1:5000"


@pytest.fixture
def logins() -> BrowserLogins:
    return BrowserLogins()


@pytest.fixture
async def client(logins: BrowserLogins) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install(app)
    app.include_router(browser_router(logins, admin=Depends(lambda: None)))
    app.add_middleware(SessionCookieAuth, logins=logins, admin_token="admin")
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http


async def _logged_in(client: httpx.AsyncClient, logins: BrowserLogins) -> str:
    answer = await client.post(
        "/v1/dashboard/session", json={"token": logins.issue()}, headers={"origin": ORIGIN}
    )
    assert answer.status_code == 204
    session = answer.cookies[cookie_name(5000)]
    assert logins.valid(session)
    return session


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://127.0.0.1:8080"},  # another local port: same site, not same origin
        {"origin": ORIGIN, "sec-fetch-site": "cross-site"},
        {},  # a form post from an old browser sends no Origin at all
    ],
)
async def test_logout_from_another_origin_is_refused_and_keeps_the_session(
    client: httpx.AsyncClient, logins: BrowserLogins, headers: dict[str, str]
) -> None:
    """DELETE /v1/dashboard/session needs the dashboard's own origin, as the login does:
    another page cannot end the operator's session (403 problem+json, session kept)."""
    session = await _logged_in(client, logins)
    answer = await client.delete("/v1/dashboard/session", headers=headers)
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in answer.headers
    assert logins.valid(session)


async def test_logout_from_the_dashboard_ends_the_session(
    client: httpx.AsyncClient, logins: BrowserLogins
) -> None:
    """The dashboard's own logout revokes the session and clears the cookie."""
    session = await _logged_in(client, logins)
    answer = await client.delete("/v1/dashboard/session", headers={"origin": ORIGIN})
    assert answer.status_code == 204
    assert not logins.valid(session)
    assert cookie_name(5000) in answer.headers["set-cookie"]
