"""Fixtures shared by the gateway tests: upstream processes and cleanup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_harness import Gateway, Upstream, start_gateway


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    """Three named upstream processes, shared by a module's tests."""
    started = {name: Upstream.start(name) for name in ("a", "b", "c")}
    yield started
    for upstream in started.values():
        upstream.kill()


@pytest.fixture(scope="module")
def gateway(
    request: pytest.FixtureRequest,
    upstreams: dict[str, Upstream],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """A real Envoy for the test module's ``MANIFEST``, in front of upstreams a, b and c
    as the services of the same names (a module with other needs defines its own)."""
    folder = tmp_path_factory.mktemp(request.module.__name__)
    gw = start_gateway(request.module.MANIFEST, folder, [upstreams[n].record(n) for n in "abc"])
    yield gw
    gw.stop()
