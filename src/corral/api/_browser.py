"""The dashboard in the browser: its page, the login exchange, and cookie sessions.

``SessionCookieAuth`` lets a browser session stand in for the admin bearer token: a
request with no Authorization header and a valid session cookie is passed on as if it
carried the admin token, so every endpoint (and every router added later) serves the
dashboard with the one authorisation check it already has. Only when the request is
plainly the dashboard's own:

- its Host is the API's loopback address (a DNS-rebound name is not);
- ``Sec-Fetch-Site``, where the browser sends it, says same-origin;
- anything but GET/HEAD also carries an ``Origin`` equal to the API's.

SameSite=Strict alone is not enough here: cookies ignore ports, so a page served by any
other local port is "same site". The cookie's name carries the API's port for the same
reason, so two systems running side by side keep their own sessions.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.params import Depends as DependsParam
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.api._gate import Access, Rule
from corral.api._logins import BrowserLogins, LoginRefused, Refusal
from corral.api._problems import ApiProblem
from corral.api._version import API_VERSION, DASHBOARD_PATH
from corral.dashboard import STATIC_DIR

__all__ = ["BROWSER_RULES", "SessionCookieAuth", "browser_router", "cookie_name", "own_request"]

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_SAFE_METHODS = ("GET", "HEAD")
_PAGE_HEADERS = {
    # Scripts and styles from the page's own origin only: no inline script can run even
    # if a service's log line or span name carried markup.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def cookie_name(port: int) -> str:
    return f"corral_session_{port}"


def _port(scope: Scope) -> int:
    server = scope.get("server") or ("", 0)
    return int(server[1] or 0)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _own_request(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    port = _port(scope)
    host = headers.get(b"host", b"").decode("latin-1")
    if host not in {f"{name}:{port}" for name in _LOOPBACK_HOSTS}:
        return False
    site = headers.get(b"sec-fetch-site")
    if site is not None and site not in (b"same-origin", b"none"):
        return False
    if scope.get("method") not in _SAFE_METHODS:
        return headers.get(b"origin", b"").decode("latin-1") == f"http://{host}"
    return True


def own_request(scope: Scope) -> bool:
    """Whether the request is plainly the dashboard page's own (see the module docstring)."""
    return _own_request(scope, _headers(scope))


def _require_dashboard(scope: Scope) -> None:
    """Refuse a session change (login, logout) that is not plainly the dashboard's own."""
    if not own_request(scope):
        raise ApiProblem(403, "not the dashboard", "open the dashboard on the API's address")


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie", b"").decode("latin-1")
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class SessionCookieAuth:
    """Pure ASGI middleware: a valid session cookie -> the admin bearer token."""

    def __init__(self, app: ASGIApp, *, logins: BrowserLogins, admin_token: str) -> None:
        self.app = app
        self.logins = logins
        self._authorization = f"Bearer {admin_token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = _headers(scope)
            if b"authorization" not in headers:
                session = _cookie(headers, cookie_name(_port(scope)))
                if session and self.logins.valid(session) and _own_request(scope, headers):
                    scope = dict(scope)
                    scope["headers"] = [
                        *scope.get("headers", ()),
                        (b"authorization", self._authorization),
                    ]
        await self.app(scope, receive, send)


class LoginExchange(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="The one-time login token.")


class LoginLink(BaseModel):
    token: str
    path: str = Field(description="Path and fragment to open on the API's address.")
    expires_in: float


_SESSION_PATH = f"/{API_VERSION}/dashboard/session"
_STATIC_PATH = "/dashboard/static"

BROWSER_RULES = {
    # The page and its assets hold no data (the page asks the API for everything).
    "/dashboard": Rule(Access.PUBLIC, 0),
    DASHBOARD_PATH: Rule(Access.PUBLIC, 0),
    _STATIC_PATH + "/{path:path}": Rule(Access.PUBLIC, 0),
    # The login exchange has no token yet: the dashboard's own origin, a login token.
    _SESSION_PATH: Rule(Access.DASHBOARD, 4096),
}
"""The gate's rules for these routes (the login link itself is admin-only)."""

_REFUSALS = {
    Refusal.UNKNOWN: "this login link is not valid (already used, or from another run)",
    Refusal.EXPIRED: "this login link has expired",
}


def browser_router(logins: BrowserLogins, *, admin: DependsParam) -> APIRouter:
    """The page, its assets and the login endpoints; ``admin``: the admin dependency."""
    router = APIRouter()
    v = f"/{API_VERSION}"
    index = STATIC_DIR / "index.html"

    @router.get("/dashboard", include_in_schema=False)
    async def to_dashboard() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PATH)

    @router.get(DASHBOARD_PATH, include_in_schema=False)
    async def page() -> FileResponse:
        # The page holds no data (it asks the API), so it is served without a login.
        return FileResponse(index, media_type="text/html", headers=_PAGE_HEADERS)

    @router.post(f"{v}/dashboard/login", dependencies=[admin], tags=["dashboard"])
    async def login_link() -> LoginLink:
        """A one-time login token for the dashboard, and the path carrying it in the
        fragment (``corral dashboard`` prints it)."""
        token = logins.issue()
        return LoginLink(
            token=token, path=f"{DASHBOARD_PATH}#login={token}", expires_in=logins.login_ttl
        )

    @router.post(_SESSION_PATH, status_code=204, tags=["dashboard"])
    async def start_session(body: LoginExchange, request: Request) -> Response:
        """Exchange a login token for a session cookie (HttpOnly, SameSite=Strict)."""
        _require_dashboard(request.scope)
        try:
            session = logins.redeem(body.token)
        except LoginRefused as exc:
            raise ApiProblem(
                401, _REFUSALS[exc.reason], "run `corral dashboard` for a new login link"
            ) from None
        response = Response(status_code=204)
        response.set_cookie(
            cookie_name(_port(request.scope)),
            session,
            max_age=int(logins.session_ttl),
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    @router.delete(_SESSION_PATH, status_code=204, tags=["dashboard"])
    async def end_session(request: Request) -> Response:
        """Log out: the session ends and the cookie is cleared. Only from the dashboard's
        own page: another page must not be able to end the operator's session."""
        _require_dashboard(request.scope)
        name = cookie_name(_port(request.scope))
        session = request.cookies.get(name)
        if session:
            logins.revoke(session)
        response = Response(status_code=204)
        response.delete_cookie(name, path="/", httponly=True, samesite="strict")
        return response

    return router


def mount_assets(app: Any) -> None:
    """The dashboard's scripts, styles and vendored chart library."""
    app.mount(_STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
