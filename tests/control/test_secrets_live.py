"""A planted secret through a real system (`corral up -d`: Envoy, NATS, an SDK service
that leaks its secret every way it can, a command service beside it): the value appears
nowhere a person or another process can read it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from test_cli_system import FIXTURE, wait_for

import testkit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

APPS = Path(__file__).parent / "apps"
PLANTED = "sk_live_" + secrets.token_urlsafe(24)
SOURCE = "LEAKY_PAYMENT_KEY"

MANIFEST = f"""name: leaky
services:
  leaky:
    app: leaky:svc
    readiness: {{http: /readyz, period: 100ms}}
    database: none
    env: {{PYTHONPATH: "{APPS}", OTEL_BSP_SCHEDULE_DELAY: "100"}}
    secrets: {{PAYMENT_KEY: {{env: {SOURCE}}}}}
  other:
    command: [{sys.executable}, {FIXTURE}]
    readiness: /readyz
    database: none
    env: {{SVC_PRINT_ENV: "{SOURCE}"}}
gateway:
  routes:
    - {{match: {{prefix: /}}, service: leaky}}
events:
  topics:
    leak.happened: {{producers: [leaky], consumers: [other]}}
"""


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI, with the secret's source variable in its environment as an operator's."""
    return testkit.corral(*args, cwd=cwd, timeout=timeout, env={SOURCE: PLANTED})


@dataclass
class System:
    root: Path
    api: str
    gateway: str
    token: str

    def get(self, path: str) -> httpx.Response:
        return httpx.get(
            self.api + path, headers={"authorization": f"Bearer {self.token}"}, timeout=10
        )


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("leaky")
    (root / "corral.yaml").write_text(MANIFEST)
    up = run("up", "-d", cwd=root)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = json.loads(run("status", "--json", cwd=root).stdout)
        token = (root / ".corral" / "token").read_text().strip()
        yield System(root, status["api_url"], status["gateway_url"], token)
    finally:
        run("down", cwd=root, timeout=60)


PRINTS = f"import os; print('probe saw', os.environ['{SOURCE}']); raise SystemExit(1)"
EXPERIMENT = f"""title: a probe that prints the secret
hypothesis:
  probes:
    - {{type: http, url: /echo, status: 200}}
    - type: command
      run: [python, -c, "{PRINTS}"]
method:
  - {{action: wait, duration: 100ms}}
"""


def _error_trace(system: System) -> dict[str, Any] | None:
    listed = system.get("/v1/traces?service=leaky&limit=500").json()
    for summary in listed:
        if summary["errors"]:
            return dict(system.get(f"/v1/traces/{summary['trace_id']}").json())
    return None


def test_a_planted_secret_appears_nowhere(system: System) -> None:
    """The secret, printed at import, logged before logging is set up, printed in a
    handler, raised in an exception and printed by a chaos run's command probe, appears 0
    times in the log files, `corral logs`, /v1/logs, the traces, every API answer, the
    chaos run records, `corral export`'s files, and the environment of every process but
    the one service that declares it."""
    with httpx.Client(base_url=system.gateway, timeout=10) as gateway:
        assert gateway.get("/echo").status_code == 200
        assert gateway.get("/boom").status_code == 500
    trace = wait_for(lambda: _error_trace(system), timeout=60, what="the failed request's trace")
    wait_for(
        lambda: "handler print" in system.get("/v1/logs?service=leaky").text,
        what="the handler's line",
    )

    seen: dict[str, str] = {}
    for path in sorted((system.root / ".corral" / "logs").glob("*.log")):
        seen[f"file {path.name}"] = path.read_text(errors="replace")
    seen["corral logs"] = run("logs", cwd=system.root).stdout
    for path in (
        "/v1/logs",
        "/v1/status",
        "/v1/instances",
        "/v1/registry",
        "/v1/config",
        "/v1/config/history",
        "/v1/telemetry/summary",
        "/v1/telemetry/graph",
        "/v1/telemetry/events",
        "/v1/traces?limit=500",
        "/v1/chaos",
        "/openapi.json",
    ):
        answer = system.get(path)
        assert answer.status_code in (200, 503), (path, answer.text)
        seen[f"GET {path}"] = answer.text
    seen["the trace"] = json.dumps(trace)
    seen["corral status"] = run("status", "--json", cwd=system.root).stdout
    # A chaos run whose command probe prints the secret (the operator's environment has
    # its source): the run's record, kept under .corral/chaos/runs/ and served by the API.
    (system.root / "leak.yaml").write_text(EXPERIMENT)
    chaos = run("chaos", "run", "leak.yaml", cwd=system.root)
    assert chaos.returncode == 1, chaos.stdout + chaos.stderr
    records = sorted((system.root / ".corral" / "chaos" / "runs").glob("run-*.json"))
    assert records, "the run was not recorded"
    for path in records:
        seen[f"chaos record {path.name}"] = path.read_text()
    seen["GET /v1/chaos/runs"] = system.get("/v1/chaos/runs").text
    seen["corral chaos list"] = run("chaos", "list", "--json", cwd=system.root).stdout
    seen["corral config show"] = run("config", "show", cwd=system.root).stdout
    deploy = system.root / "deploy"
    exported = run("export", "all", "-o", str(deploy), cwd=system.root)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    seen["corral export"] = exported.stdout + exported.stderr
    for path in sorted(p for p in deploy.rglob("*") if p.is_file()):
        seen[f"export {path.relative_to(deploy)}"] = path.read_text(errors="replace")

    leaks = [where for where, text in seen.items() if PLANTED in text]
    assert leaks == []
    # Not vacuous: each leak happened, and was redacted where it landed.
    logs = seen["file leaky-1.log"]
    for what in ("import-time print", "import-time stderr", "handler print"):
        assert f"{what} **********" in logs, what
    assert "probe saw **********" in seen[f"chaos record {records[0].name}"]
    events = [e for span in trace["spans"] for e in span["events"]]
    assert any("**********" in json.dumps(e) for e in events), trace

    status = json.loads(seen["corral status"])
    for record in status["instances"]:
        environ = psutil.Process(record["pid"]).environ()
        assert PLANTED not in environ.values() or record["service"] == "leaky", record
        assert SOURCE not in environ, record  # only leaky has it, as PAYMENT_KEY
        if record["component"]:
            assert not any(k.startswith("CORRAL_") and "TOKEN" in k for k in environ), record
    assert f"{SOURCE}=None" in seen["file other-1.log"]
