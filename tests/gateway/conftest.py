"""Fixtures shared by the gateway tests: upstream processes and cleanup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_harness import Upstream


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    """Three named upstream processes, shared by a module's tests."""
    started = {name: Upstream.start(name) for name in ("a", "b", "c")}
    yield started
    for upstream in started.values():
        upstream.kill()
