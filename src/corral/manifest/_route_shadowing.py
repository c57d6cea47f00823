"""Routes that can never match: an earlier route takes every request they would.

Envoy tries routes in order and the first match wins, so a route below ``prefix: /`` (or
below ``prefix: /rides`` when it says ``prefix: /rides/history``) is dead configuration
that Envoy accepts without a word. The person who wrote it meant something else: say so,
at the dead route's line, naming the route that hides it.

The check is conservative: it reports a route only when the earlier one provably covers
it (path, host, methods and header conditions all at least as wide). Regular expressions
are compared by identity, except that an exact path under a regex route is tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from corral.manifest._diagnostics import Diagnostic
from corral.manifest._gateway import MatchSpec, RouteSpec
from corral.manifest._source import SourceMap


def shadowed_routes(routes: Sequence[RouteSpec], source: SourceMap) -> list[Diagnostic]:
    """One diagnostic per route that an earlier route covers completely."""
    problems: list[Diagnostic] = []
    for later, route in enumerate(routes):
        for earlier in range(later):
            if covers(routes[earlier].match, route.match):
                line, _ = source.locate(("gateway", "routes", earlier))
                # Named by line, which is what the reader sees (the index is 0-based).
                problems.append(
                    source.diagnostic(
                        ("gateway", "routes", later, "match"),
                        f"this route can never match: the route at line {line} takes every "
                        "request it would (routes are tried in order, first match wins)",
                        f"move it above the route at line {line}, or narrow that one",
                    )
                )
                break
    return problems


def covers(wide: MatchSpec, narrow: MatchSpec) -> bool:
    """Every request ``narrow`` matches is also matched by ``wide``."""
    return (
        _covers_path(wide, narrow)
        and _covers_host(wide.host, narrow.host)
        and (
            not wide.methods or (bool(narrow.methods) and set(narrow.methods) <= set(wide.methods))
        )
        and all(narrow.headers.get(name) == spec for name, spec in wide.headers.items())
    )


def prefix_matches(prefix: str, path: str) -> bool:
    """How the gateway renders ``prefix``: on segment boundaries (``/rides`` takes
    ``/rides`` and ``/rides/7``, not ``/ridesx``), or as a plain string prefix when it
    ends with ``/``."""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def _covers_path(wide: MatchSpec, narrow: MatchSpec) -> bool:
    if wide.prefix is not None:
        if narrow.regex is not None:
            return wide.prefix == "/"
        # Every path under a narrower prefix starts with it, so testing the prefix itself
        # is enough (also for a prefix ending in '/': see prefix_matches).
        other = narrow.prefix if narrow.prefix is not None else narrow.exact
        return other is not None and prefix_matches(wide.prefix, other)
    if wide.exact is not None:
        return narrow.exact == wide.exact
    assert wide.regex is not None
    if narrow.regex is not None:
        return narrow.regex == wide.regex
    # Envoy's regex route match is on the whole path, as fullmatch here.
    return narrow.exact is not None and re.fullmatch(wide.regex, narrow.exact) is not None


def _covers_host(wide: str | None, narrow: str | None) -> bool:
    if wide is None or wide == narrow:
        return True
    if narrow is None:
        return False
    return wide.startswith("*.") and narrow.endswith(wide[1:])
