"""No ridehail request waits on FastAPI's thread pool (no service started): every
endpoint and every dependency it solves is a coroutine (``contracts.identity``'s
caller, ``contracts.started``'s holders). FastAPI runs a plain ``def`` dependency on a
worker thread, a hop there and back on every request."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from owned_routes import SERVICES


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _on_the_loop(call: Callable[..., Any]) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__  # type: ignore[operator]
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


@pytest.mark.parametrize("service", SERVICES)
def test_every_dependency_runs_on_the_event_loop(service: str) -> None:
    app = importlib.import_module(f"{service}.app").svc.app
    threaded = {
        f"{route.path}: {getattr(call, '__qualname__', repr(call))}"
        for route in app.routes
        if isinstance(route, APIRoute)
        for call in _calls(route.dependant)
        if not _on_the_loop(call)
    }
    assert not threaded
