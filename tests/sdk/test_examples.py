"""examples/hello: greeter in process, front calling a real greeter process over HTTP."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sdk_helpers import EXAMPLES

from corral import contract
from corral.sdk.testing import capture_logs, serve_in_process


@pytest.fixture
def hello_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Import the example modules the way serve does: from examples/hello."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in ("greeter", "front")]:
        del sys.modules[name]


async def test_greeter_answers(hello_path: None) -> None:
    """GET /hello/{name} returns the greeting as JSON."""
    svc = importlib.import_module("greeter.app").svc
    async with serve_in_process(svc, env={contract.INSTANCE: "greeter-1"}) as client:
        response = await client.get("/hello/ada")
    assert response.json() == {"message": "hello, ada", "served_by": "greeter-1"}


@pytest.mark.integration
async def test_front_calls_greeter_with_trace_context(hello_path: None, serve_process: Any) -> None:
    """front reaches a real greeter by CORRAL_URL_GREETER and both log the same trace id."""
    greeter = serve_process("greeter.app:svc", cwd=EXAMPLES)
    greeter.wait_ready()
    svc = importlib.import_module("front.app").svc
    env = {contract.service_url_variable("greeter"): greeter.base_url, "GREETING_STYLE": "friendly"}
    with capture_logs() as logs:
        async with serve_in_process(svc, env=env) as client:
            response = await client.get("/greet/ada")
    assert response.status_code == 200
    assert response.json()["greeting"] == "hello, ada! :)"
    assert response.json()["served_by"]
    trace_id = next(line["trace_id"] for line in logs if line["event"] == "request")
    greeter_lines = [json.loads(x) for x in greeter.output().splitlines() if x.startswith("{")]
    assert trace_id in {line.get("trace_id") for line in greeter_lines}


async def test_front_answers_502_problem_when_greeter_is_unreachable(hello_path: None) -> None:
    """With greeter down, front degrades to a clear 502 problem instead of hanging."""
    svc = importlib.import_module("front.app").svc
    env = {contract.service_url_variable("greeter"): "http://127.0.0.1:9"}
    async with serve_in_process(svc, env=env) as client:
        response = await client.get("/greet/ada")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "greeter unavailable"
