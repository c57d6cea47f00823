"""Which HTTP filters the listener carries and which routes turn them on: a request pays
only for the filters its route uses, and the guarding filters stay on by default."""

from __future__ import annotations

import sys

import pytest

from corral.gateway._envoy import (
    F_BUFFER,
    F_CORS,
    F_FAULT,
    F_JWT,
    F_MUTATION,
    F_RATELIMIT,
    F_RBAC,
    F_ROUTER,
    T_FILTER_CONFIG,
)
from corral.gateway._filters import http_filters, jwt_authn, route_filter_configs
from corral.manifest import parse
from corral.plan import GatewayPlan, resolve

HEAD = """name: shop
services:
  a: {command: "true"}
gateway:
  jwt:
    main: {issuer: https://i.test, audiences: [shop], jwks: {file: /k.json}}
  routes:
"""
PLAIN = "    - {match: {prefix: /x}, service: a}\n"
PUBLIC = "    - {match: {prefix: /p}, service: a, auth: public}\n"
LIMITED = "    - {match: {prefix: /l}, service: a, rate_limit: {requests: 5, per: 1s}}\n"
CORS = "    - {match: {prefix: /c}, service: a, cors: {origins: ['https://x.test']}}\n"
ROLES = "    - {match: {prefix: /r}, service: a, auth: {roles: [admin]}}\n"
SOCKET = "    - {match: {prefix: /w}, service: a, websocket: true}\n"


def _plan(routes: str) -> GatewayPlan:
    plan = resolve(parse(HEAD + routes, "/shop/corral.yaml"), python=sys.executable)
    assert plan.gateway is not None
    return plan.gateway


def _chain(plan: GatewayPlan) -> list[tuple[str, bool]]:
    return [(f["name"], bool(f.get("disabled"))) for f in http_filters(plan)]


GUARDS_BEFORE = [(F_MUTATION, False)]
ALWAYS_AFTER = [(F_FAULT, False), (F_ROUTER, False)]

CHAINS = [
    (
        "jwt only: no CORS, RBAC or rate limit filter at all",
        PLAIN,
        [*GUARDS_BEFORE, (F_JWT, False), (F_BUFFER, False), *ALWAYS_AFTER],
    ),
    (
        "CORS, RBAC and rate limit present but off unless a route turns them on",
        PLAIN + LIMITED + CORS + ROLES,
        [
            *GUARDS_BEFORE,
            (F_CORS, True),
            (F_JWT, False),
            (F_RBAC, True),
            (F_RATELIMIT, True),
            (F_BUFFER, False),
            *ALWAYS_AFTER,
        ],
    ),
    (
        "only unbuffered routes: no buffer filter",
        SOCKET,
        [*GUARDS_BEFORE, (F_JWT, False), *ALWAYS_AFTER],
    ),
]


@pytest.mark.parametrize(("case", "routes", "chain"), CHAINS, ids=[c[0] for c in CHAINS])
def test_listener_chain(case: str, routes: str, chain: list[tuple[str, bool]]) -> None:
    """The listener's filters, in order, and which are off by default."""
    assert _chain(_plan(routes)) == chain


OFF = {"@type": T_FILTER_CONFIG, "disabled": True}

ROUTES = [
    # (route, filters its config must name, filters it must not name, filters it turns off)
    (PLAIN, {F_JWT, F_FAULT}, {F_CORS, F_RBAC, F_RATELIMIT}, set()),
    (PUBLIC, {F_FAULT}, {F_CORS, F_RBAC, F_RATELIMIT}, {F_JWT}),
    (LIMITED, {F_JWT, F_RATELIMIT, F_FAULT}, {F_CORS, F_RBAC}, set()),
    (CORS, {F_JWT, F_CORS, F_FAULT}, {F_RBAC, F_RATELIMIT}, set()),
    (ROLES, {F_JWT, F_RBAC, F_FAULT}, {F_CORS, F_RATELIMIT}, set()),
    (SOCKET, {F_JWT, F_FAULT}, {F_CORS, F_RBAC, F_RATELIMIT}, {F_BUFFER}),
]


@pytest.mark.parametrize(
    ("route", "names", "absent", "turned_off"),
    ROUTES,
    ids=["plain", "public", "limited", "cors", "roles", "websocket"],
)
def test_route_turns_on_what_it_uses(
    route: str, names: set[str], absent: set[str], turned_off: set[str]
) -> None:
    """A route's per-filter configs turn on exactly the optional filters it uses; a
    public route turns jwt_authn off and an unbuffered one the body cap, explicitly."""
    others = "".join(r for r in (LIMITED, CORS, ROLES) if r != route)
    plan = _plan(route + others)
    config = route_filter_configs(plan, plan.routes[0])
    assert names | turned_off <= set(config)
    assert not absent & set(config)
    assert {name for name, value in config.items() if value == OFF} == turned_off


@pytest.mark.parametrize(
    ("routes", "bypass"),
    [(PLAIN, False), (PLAIN + PUBLIC + LIMITED + ROLES, False), (PLAIN + CORS, True)],
    ids=["jwt only", "no route answers CORS", "a CORS route"],
)
def test_preflight_skips_jwt_only_where_cors_is_answered(routes: str, bypass: bool) -> None:
    """A tokenless CORS preflight reaches a service only when some route answers CORS;
    elsewhere an OPTIONS request needs a token like any other."""
    assert jwt_authn(_plan(routes))["bypass_cors_preflight"] is bypass
