"""Which earlier route hides which later one (first match wins in Envoy): a table of
match pairs, then the diagnostic as `corral validate` prints it."""

from __future__ import annotations

from typing import Any

import pytest

from corral.manifest import ManifestError, parse
from corral.manifest._gateway import MatchSpec
from corral.manifest._route_shadowing import covers, prefix_matches


def m(**fields: Any) -> MatchSpec:
    return MatchSpec.model_validate(fields)


# (wide, narrow, does wide take every request narrow would?)
CASES = [
    # paths: segment-boundary prefixes
    (m(prefix="/"), m(prefix="/rides"), True),
    (m(prefix="/"), m(regex="/r.*"), True),
    (m(prefix="/rides"), m(prefix="/rides"), True),
    (m(prefix="/rides"), m(prefix="/rides/history"), True),
    (m(prefix="/rides"), m(exact="/rides/export"), True),
    (m(prefix="/rides"), m(exact="/rides"), True),
    (m(prefix="/rides"), m(prefix="/ridesx"), False),
    (m(prefix="/rides"), m(exact="/ride"), False),
    (m(prefix="/rides/history"), m(prefix="/rides"), False),
    (m(prefix="/rides"), m(regex="/rides/.*"), False),
    # a prefix ending in '/' is a plain string prefix
    (m(prefix="/rides/"), m(prefix="/rides"), False),
    (m(prefix="/rides/"), m(prefix="/rides/a"), True),
    (m(prefix="/rides/"), m(exact="/rides/"), True),
    # exact and regex
    (m(exact="/health"), m(exact="/health"), True),
    (m(exact="/health"), m(prefix="/health"), False),
    (m(regex="/r/[0-9]+"), m(regex="/r/[0-9]+"), True),
    (m(regex="/r/[0-9]+"), m(exact="/r/42"), True),
    (m(regex="/r/[0-9]+"), m(exact="/r/42/x"), False),
    (m(regex="/r/[0-9]+"), m(prefix="/r/1"), False),
    # methods: the earlier route must allow every method of the later one
    (m(prefix="/a"), m(prefix="/a", methods=["GET"]), True),
    (m(prefix="/a", methods=["GET", "POST"]), m(prefix="/a", methods=["GET"]), True),
    (m(prefix="/a", methods=["GET"]), m(prefix="/a", methods=["GET", "POST"]), False),
    (m(prefix="/a", methods=["GET"]), m(prefix="/a"), False),
    # host
    (m(prefix="/a"), m(prefix="/a", host="api.test"), True),
    (m(prefix="/a", host="api.test"), m(prefix="/a"), False),
    (m(prefix="/a", host="api.test"), m(prefix="/a", host="www.test"), False),
    (m(prefix="/a", host="*.shop.test"), m(prefix="/a", host="eu.shop.test"), True),
    (m(prefix="/a", host="*.shop.test"), m(prefix="/a", host="shop.test"), False),
    # headers: the earlier route's conditions must all hold on the later one
    (m(prefix="/a"), m(prefix="/a", headers={"x-tenant": "blue"}), True),
    (m(prefix="/a", headers={"x-tenant": "blue"}), m(prefix="/a"), False),
    (
        m(prefix="/a", headers={"x-tenant": "blue"}),
        m(prefix="/a", headers={"x-tenant": "blue", "x-beta": {"present": True}}),
        True,
    ),
    (
        m(prefix="/a", headers={"x-tenant": "blue"}),
        m(prefix="/a", headers={"x-tenant": "green"}),
        False,
    ),
]


@pytest.mark.parametrize(("wide", "narrow", "expected"), CASES)
def test_covers(wide: MatchSpec, narrow: MatchSpec, expected: bool) -> None:
    assert covers(wide, narrow) is expected


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/rides", "/rides", True),
        ("/rides", "/rides/7", True),
        ("/rides", "/ridesx", False),
        ("/rides/", "/rides", False),
        ("/rides/", "/rides/7", True),
        ("/", "/anything", True),
    ],
)
def test_prefix_matches_like_the_rendered_route(prefix: str, path: str, expected: bool) -> None:
    assert prefix_matches(prefix, path) is expected


MANIFEST = """\
name: shop
services:
  orders: {command: "true"}
gateway:
  routes:
    - match: {prefix: /orders}
      service: orders
      auth: public
    - match: {exact: /orders/export}
      service: orders
      auth: public
    - match: {prefix: /orders/history, methods: [GET]}
      service: orders
      auth: public
"""


def test_every_shadowed_route_is_reported_at_its_line_naming_the_one_above() -> None:
    with pytest.raises(ManifestError) as caught:
        parse(MANIFEST, "corral.yaml")
    hidden = (
        "this route can never match: the route at line 6 takes every request it would "
        "(routes are tried in order, first match wins) (move it above the route at line 6, "
        "or narrow that one)"
    )
    assert [str(d) for d in caught.value.diagnostics] == [
        f"corral.yaml:9:7: gateway.routes[1].match: {hidden}",
        f"corral.yaml:12:7: gateway.routes[2].match: {hidden}",
    ]


def test_specific_routes_first_is_accepted() -> None:
    reordered = MANIFEST.replace("    - match: {prefix: /orders}\n", "    - match: {prefix: /zz}\n")
    parse(reordered, "corral.yaml")
