"""Every ridehail endpoint that takes an id, and how to find them in the services.

The ownership tests (test_ridehail_e2e.py) send each of these, as a stranger, through the
real gateway; test_owned_routes.py checks that this table names every route of every
service that takes an id, so a new one cannot be added without its ownership test.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fastapi.routing import APIRoute

SERVICES = ("auth", "rides", "matching", "payments", "fakepay", "tracking")
ID_QUERY = frozenset({"reference"})
"""Query parameters that name an object without ending in ``_id``."""


@dataclass(frozen=True)
class Owned:
    service: str
    method: str
    route: str
    """The service's own route template."""
    gateway_path: str
    """The same route through the gateway, ``{id}`` standing for the ride's id."""
    ride: str
    """Which of the cast's rides its owner may use it on: ``ride`` (matched) or ``paid``."""


OWNED = (
    Owned("rides", "GET", "/rides/{ride_id}", "/rides/{id}", "ride"),
    Owned("rides", "GET", "/rides/{ride_id}", "/rides/{id}", "paid"),
    Owned("rides", "POST", "/rides/{ride_id}/{step}", "/rides/{id}/cancel", "ride"),
    Owned("rides", "POST", "/rides/{ride_id}/{step}", "/rides/{id}/arrive", "ride"),
    Owned("rides", "POST", "/rides/{ride_id}/{step}", "/rides/{id}/start", "ride"),
    Owned("rides", "POST", "/rides/{ride_id}/{step}", "/rides/{id}/complete", "ride"),
    Owned("tracking", "GET", "/rides/{ride_id}/live", "/tracking/rides/{id}/live", "ride"),
    Owned(
        "tracking", "GET", "/rides/{ride_id}/positions", "/tracking/rides/{id}/positions", "paid"
    ),
    Owned("tracking", "GET", "/rides/{ride_id}/distance", "/tracking/rides/{id}/distance", "paid"),
    Owned("payments", "GET", "/payments", "/payments?ride_id={id}", "paid"),
    Owned("fakepay", "GET", "/charges", "/admin/fakepay/charges?reference={id}", "paid"),
)


def id_routes() -> set[tuple[str, str, str]]:
    """``(service, method, route)`` of every route that takes an id: a path parameter,
    or a query parameter ending in ``_id`` (or in :data:`ID_QUERY`)."""
    found: set[tuple[str, str, str]] = set()
    for service in SERVICES:
        app = importlib.import_module(f"{service}.app").svc.app
        for route in app.routes:
            if not isinstance(route, APIRoute):
                continue
            query = {p.name for p in route.dependant.query_params}
            takes_id = bool(route.dependant.path_params) or any(
                q.endswith("_id") or q in ID_QUERY for q in query
            )
            if takes_id:
                found.update((service, method, route.path) for method in route.methods)
    return found
