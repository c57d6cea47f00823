"""Which of a route's requests would land on a service's internal endpoints. Pure.

Every SDK service serves ``/metrics``, ``/healthz``, ``/readyz``, ``/corral/...`` and
FastAPI's ``/docs``, ``/redoc`` and ``/openapi.json`` (manifest INTERNAL_ENDPOINTS). A
route such as ``{prefix: /auth, rewrite: /}`` would forward ``/auth/metrics`` to
``/metrics``: the system's internals, public. So before each route the renderer puts a
route that answers 404 to exactly the requests the route would take and forward to an
internal endpoint it does not ``expose``: the same path rule, host, methods and headers,
plus a regular expression on the whole ``:path`` (:func:`refused_paths`).

Routing decides on the path as the client sent it and rewrites later, so the expression
describes the client's paths whose rewrite lands on an internal one:

- no rewrite: the internal paths themselves;
- a prefix rewrite (``/auth`` -> ``/``): the prefix, then the rest an internal path
  has after the rewrite's text (``/auth/metrics``);
- an exact or constant rewrite: one upstream path, internal or not (the manifest refuses
  a route every request of which is internal, unless it exposes it);
- a regex rewrite with capture groups (``\\1``), which no expression can invert: any
  path that ends in an internal path or passes through ``/corral/``, conservatively.

The expression reads the path after Envoy's normalization (``normalize_path``, see
render_listener): dot segments resolved, repeated slashes merged, percent-encoded
letters, digits and ``-._~`` decoded (so ``/auth/%6detrics`` is ``/auth/metrics`` here,
as it would be for the service), an encoded slash refused.
"""

from __future__ import annotations

import re

from corral.gateway._filters import regex_escape
from corral.manifest import INTERNAL_ENDPOINTS, InternalEndpoint
from corral.plan import RoutePlan

_BACKREFERENCE = re.compile(r"\\[0-9]")
_QUERY = r"(?:\?.*)?$"
_REST = "[^?]*"
"""Any path characters (the query string is matched apart)."""


def refused_paths(route: RoutePlan) -> str | None:
    """An RE2 expression over the request's ``:path`` (query string included) matching
    the requests ``route`` takes that would reach an internal endpoint it does not
    expose; None when it can take none."""
    hidden = [e for e in INTERNAL_ENDPOINTS.values() if e.name not in route.expose]
    if not hidden:
        return None
    if route.prefix is not None:
        stem = route.prefix.rstrip("/")
        if route.rewrite is None:
            base, separator = stem, ""
        elif route.rewrite.endswith("/"):
            # Envoy rewrites ^stem/? to the rewrite: the slash after the stem is consumed.
            base, separator = route.rewrite, "/?"
        else:
            base, separator = route.rewrite, ""
        return _expression(regex_escape(stem) + separator, base, hidden)
    if route.exact is not None:
        return _expression("", route.rewrite or route.exact, hidden, whole=True)
    assert route.regex is not None
    if route.rewrite is None:
        return _expression("", "", hidden)
    if not _BACKREFERENCE.search(route.rewrite):
        return _expression("", route.rewrite, hidden, whole=True)
    return _expression(_REST, "", hidden)


def _expression(
    head: str, base: str, hidden: list[InternalEndpoint], *, whole: bool = False
) -> str | None:
    """``^head`` then what, appended to the upstream text ``base``, makes an internal
    path; ``whole``: the upstream path is ``base`` itself (nothing is appended)."""
    if whole:
        if any(e.covers(base) for e in hidden):
            return "^" + _REST + _QUERY
        return None
    tails = sorted({tail for e in hidden for tail in _tails(base, e)})
    if not tails:
        return None
    return "^" + head + "(?:" + "|".join(tails) + ")" + _QUERY


def _tails(base: str, endpoint: InternalEndpoint) -> list[str]:
    """Expressions for the texts that ``base`` + text is one of ``endpoint``'s paths."""
    out: list[str] = []
    below = "(?:/" + _REST + ")?"
    for path in endpoint.paths:
        if path.startswith(base):
            out.append(regex_escape(path[len(base) :]) + (below if endpoint.below else "/?"))
        elif base == path + "/":
            out.append(_REST if endpoint.below else "")
        elif endpoint.below and base.startswith(path + "/"):
            out.append(_REST)
    return out
