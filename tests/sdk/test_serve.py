"""The real process: python -m corral.sdk.serve, readiness, graceful drain on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest
from sdk_helpers import APPS, wait_for

from corral import contract

pytestmark = pytest.mark.integration

TOKEN = "serve-secret-9d8c7b"


def test_sigterm_drains_in_flight_request_then_exits_zero(serve_process: Any) -> None:
    """After SIGTERM readiness is 503 at once, the slow request still gets 200, exit is 0."""
    served = serve_process(
        "slowapp:svc",
        env={"API_TOKEN": TOKEN, "SLOW_SECONDS": "2", contract.GRACE_PERIOD: "20"},
    )
    served.wait_ready()
    result: dict[str, Any] = {}

    def slow_call() -> None:
        with httpx.Client(timeout=30) as client:
            result["response"] = client.get(served.base_url + "/slow")

    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_for(
        lambda: '"path": "/slow"' in served.output() or _in_flight(served) > 0,
        timeout=10,
        what="the slow request to be in flight",
    )
    served.proc.send_signal(signal.SIGTERM)

    def not_ready() -> bool:
        response = httpx.get(served.base_url + contract.READINESS_PATH, timeout=2)
        return response.status_code == 503

    wait_for(not_ready, timeout=5, what="readiness to turn 503")
    readiness = httpx.get(served.base_url + contract.READINESS_PATH, timeout=2)
    assert readiness.headers["content-type"] == "application/problem+json"
    assert "shutdown" in readiness.json()["checks"]
    assert caller.is_alive(), "the slow request finished before readiness was checked"

    caller.join(30)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"done": "yes"}
    assert served.proc.wait(20) == 0

    lines = [json.loads(line) for line in served.output().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "draining" in events
    assert events.index("draining") < events.index("service stopped")
    access = [line for line in lines if line["event"] == "request"]
    assert [a["route"] for a in access] == ["/slow"]


def _in_flight(served: Any) -> float:
    text = httpx.get(served.base_url + contract.METRICS_PATH, timeout=2).text
    for line in text.splitlines():
        if line.startswith("http_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


def test_process_logs_are_json_and_secret_free(serve_process: Any) -> None:
    """Everything the served process prints is JSON lines, without the secret setting."""
    served = serve_process("slowapp:svc", env={"API_TOKEN": TOKEN})
    served.wait_ready()
    assert httpx.get(served.base_url + "/leak").status_code == 200
    assert httpx.get(served.base_url + "/missing").status_code == 404
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(20) == 0
    output = served.output()
    assert TOKEN not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any(line["event"] == "about to leak" for line in lines)
    # uvicorn's own records are structured too, and its access log is off.
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)
    assert sum(line["event"] == "request" for line in lines) == 2


def test_bad_settings_exit_2_with_one_message() -> None:
    """Missing and invalid settings: exit code 2, one message naming every field, no traceback."""
    env = {"PATH": "/usr/bin:/bin", contract.PORT: "not-a-port", "SLOW_SECONDS": "soon"}
    proc = subprocess.run(
        [sys.executable, "-m", "corral.sdk.serve", "slowapp:svc"],
        cwd=APPS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "API_TOKEN: required but not set" in proc.stderr
    assert "SLOW_SECONDS" in proc.stderr
    assert "PORT" in proc.stderr
    assert "not-a-port" not in proc.stderr  # rejected input is never echoed


def test_unknown_target_exit_2() -> None:
    """A target that does not import is a clear message and exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "corral.sdk.serve", "nosuchmodule:svc"],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot import 'nosuchmodule'" in proc.stderr
