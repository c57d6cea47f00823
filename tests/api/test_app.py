"""The control-plane API against an in-memory target (the real one is covered end to end
in tests/control)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from corral.api import create_app
from corral.chaos import ChaosExperiment, ChaosOverview, ExperimentKind
from corral.runtime.registry import InstanceRecord, InstanceState, Registry
from corral.runtime.status import ServiceStatus, SystemStatus

ADMIN = "admin-token"
DISCOVERY = "discovery-token"


class FakeLogs:
    def __init__(self) -> None:
        self.lines = [
            {"t": 1.0, "service": "web", "instance": "web-1", "stream": "stdout", "line": "a"},
            {"t": 2.0, "service": "api", "instance": "api-1", "stream": "stdout", "line": "b"},
        ]

    def read(
        self,
        services: Sequence[str] | None = None,
        since: float | None = None,
        tail: int | None = None,
    ) -> list[dict[str, Any]]:
        out = [
            x
            for x in self.lines
            if (not services or x["service"] in services) and (since is None or x["t"] > since)
        ]
        return out[-tail:] if tail else out

    async def follow(
        self, services: Sequence[str] | None = None, since: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"t": 3.0, "service": "web", "instance": "web-1", "stream": "stdout", "line": "c"}


def experiment(kind: ExperimentKind, target: str, **params: Any) -> ChaosExperiment:
    return ChaosExperiment(
        id="chaos-1",
        kind=kind,
        target=target,
        state="active",
        detail=f"{kind} on {target}",
        started_at=1.0,
        expires_at=11.0,
        remaining=10.0,
        **params,
    )


class FakeChaos:
    async def kill(self, target: str) -> ChaosExperiment:
        return experiment("kill", target).model_copy(update={"state": "done", "expires_at": None})

    async def pause(self, target: str, seconds: float) -> ChaosExperiment:
        return experiment("pause", target, seconds=seconds)

    async def fault(
        self,
        service: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment:
        params = {"abort_status": abort_status, "delay_ms": delay_ms, "seconds": seconds}
        return experiment("gateway", service, percent=percent, **params)

    def overview(self) -> ChaosOverview:
        return ChaosOverview(active=[experiment("pause", "web-1", seconds=10.0)], recent=[])

    async def stop(self, experiment_id: str) -> ChaosExperiment:
        return experiment("pause", "web-1").model_copy(update={"state": "stopped"})

    async def stop_all(self) -> list[ChaosExperiment]:
        return [await self.stop("chaos-1")]


class FakeTarget:
    def __init__(self) -> None:
        self.registry = Registry()
        self.logs = FakeLogs()
        self.calls: list[tuple[str, ...]] = []
        self.chaos = FakeChaos()

    def status(self) -> SystemStatus:
        services = {
            name: ServiceStatus(replicas=1, ready=1, instances=1, component=False)
            for name in ("web", "api")
        }
        return SystemStatus(
            system="demo",
            state="running",
            pid=1,
            manifest="/tmp/demo/corral.yaml",
            state_dir="/tmp/demo/.corral",
            started_at=None,
            registry_version=0,
            services=services,
            instances=[],
        )

    def has_service(self, service: str) -> bool:
        return service in ("web", "api")

    async def circuits(self) -> list[dict[str, Any]]:
        return [{"service": "web", "instance": "web-1", "target": "api", "state": "open"}]

    async def scale(self, service: str, replicas: int) -> None:
        self.calls.append(("scale", service, str(replicas)))

    async def restart(self, service: str, *, rolling: bool = False) -> None:
        self.calls.append(("restart", service, str(rolling)))

    async def start_service(self, service: str) -> bool:
        self.calls.append(("start", service))
        return True

    async def stop_service(self, service: str) -> None:
        self.calls.append(("stop", service))


@pytest.fixture
async def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
async def client(target: FakeTarget) -> AsyncIterator[httpx.AsyncClient]:
    stopped = asyncio.Event()

    async def shutdown() -> None:
        stopped.set()

    app = create_app(
        target, admin_token=ADMIN, discovery_token=DISCOVERY, request_shutdown=shutdown
    )
    app.state.stopped = stopped
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_requests_without_a_token_get_a_401_problem(client: httpx.AsyncClient) -> None:
    """No token, no access; the answer is problem+json."""
    response = await client.get("/v1/status")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "missing bearer token"


async def test_a_wrong_token_is_refused(client: httpx.AsyncClient) -> None:
    """A token that is not the admin's is refused."""
    response = await client.get("/v1/status", headers=auth("nope"))
    assert response.status_code == 401
    assert response.json()["title"] == "invalid bearer token"


async def test_discovery_token_reads_the_registry_but_cannot_change_anything(
    client: httpx.AsyncClient,
) -> None:
    """Instances hold the discovery token: registry read yes, scale/status no."""
    assert (await client.get("/v1/registry", headers=auth(DISCOVERY))).status_code == 200
    scale = await client.post(
        "/v1/services/web/scale", json={"replicas": 2}, headers=auth(DISCOVERY)
    )
    assert scale.status_code == 401
    assert (await client.get("/v1/status", headers=auth(DISCOVERY))).status_code == 401


async def test_status_lists_open_circuits(client: httpx.AsyncClient) -> None:
    """Status carries the circuits services report as not closed."""
    body = (await client.get("/v1/status", headers=auth())).json()
    assert body["open_circuits"] == [
        {
            "service": "web",
            "instance": "web-1",
            "target": "api",
            "state": "open",
            "retry_after": None,
        }
    ]


async def test_scale_reaches_the_target(client: httpx.AsyncClient, target: FakeTarget) -> None:
    """POST scale calls the orchestrator with the service and count."""
    response = await client.post("/v1/services/web/scale", json={"replicas": 3}, headers=auth())
    assert response.status_code == 200
    assert target.calls == [("scale", "web", "3")]


async def test_unknown_service_is_a_404_problem(client: httpx.AsyncClient) -> None:
    """Scaling a service the manifest does not have names it in a 404 problem."""
    response = await client.post("/v1/services/nope/scale", json={"replicas": 1}, headers=auth())
    assert response.status_code == 404
    assert response.json() == {
        "type": "about:blank",
        "title": "unknown service",
        "status": 404,
        "detail": "no service named 'nope'",
    }


async def test_invalid_body_is_a_422_problem(client: httpx.AsyncClient) -> None:
    """A negative replica count is refused with the field's location."""
    response = await client.post("/v1/services/web/scale", json={"replicas": -1}, headers=auth())
    assert response.status_code == 422
    body = response.json()
    assert body["title"] == "invalid request"
    assert body["errors"][0]["loc"] == ["body", "replicas"]


async def test_restart_passes_rolling(client: httpx.AsyncClient, target: FakeTarget) -> None:
    """A rolling restart request is passed through as rolling."""
    response = await client.post("/v1/services/api/restart", json={"rolling": True}, headers=auth())
    assert response.status_code == 200
    assert target.calls == [("restart", "api", "True")]


async def test_logs_filter_by_service_and_tail(client: httpx.AsyncClient) -> None:
    """Logs can be filtered by service and limited to the last lines."""
    response = await client.get("/v1/logs", params={"service": "api"}, headers=auth())
    assert [x["line"] for x in response.json()] == ["b"]
    response = await client.get("/v1/logs", params={"tail": 1}, headers=auth())
    assert [x["line"] for x in response.json()] == ["b"]


async def test_down_requests_shutdown(client: httpx.AsyncClient) -> None:
    """POST /down asks the session to stop."""
    app = client._transport.app  # type: ignore[attr-defined]
    response = await client.post("/v1/down", headers=auth())
    assert response.status_code == 200
    await asyncio.wait_for(app.state.stopped.wait(), timeout=5)


async def test_registry_snapshot_lists_instances(
    client: httpx.AsyncClient, target: FakeTarget
) -> None:
    """The registry endpoint returns the versioned snapshot with addresses."""
    target.registry.put(
        InstanceRecord("web", "web-1", "127.0.0.1", 8001, InstanceState.RUNNING, ready=True)
    )
    body = (await client.get("/v1/registry", headers=auth(DISCOVERY))).json()
    assert body["version"] == 1
    assert body["instances"][0]["address"] == "127.0.0.1:8001"
    assert body["instances"][0]["ready"] is True


async def test_openapi_is_published(client: httpx.AsyncClient) -> None:
    """The API documents itself (OpenAPI) without a token."""
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/services/{service}/scale" in spec["paths"]
    assert json.dumps(spec)  # serialisable


async def test_openapi_names_the_chaos_models(client: httpx.AsyncClient) -> None:
    """Chaos answers are declared (one schema for the control plane, the API and the
    client), not free-form objects."""
    spec = (await client.get("/openapi.json")).json()
    schemas = set(spec["components"]["schemas"])
    assert {"ChaosExperiment", "ChaosOverview", "ChaosStopped"} <= schemas

    def answer(path: str, method: str) -> str:
        content = spec["paths"][path][method]["responses"]["200"]["content"]
        return str(content["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]

    assert answer("/v1/chaos", "get") == "ChaosOverview"
    assert answer("/v1/chaos", "delete") == "ChaosStopped"
    for path in ("kill", "pause", "gateway"):
        assert answer(f"/v1/chaos/{path}", "post") == "ChaosExperiment"
    assert answer("/v1/chaos/{experiment}", "delete") == "ChaosExperiment"


async def test_chaos_answers_keep_their_json(client: httpx.AsyncClient) -> None:
    """An experiment's JSON: its record, then the parameters it was begun with."""
    body = {"service": "web", "abort_status": 503, "percent": 50, "seconds": 5}
    started = (await client.post("/v1/chaos/gateway", json=body, headers=auth())).json()
    assert started["id"] == "chaos-1"
    assert (started["kind"], started["target"], started["state"]) == ("gateway", "web", "active")
    assert (started["percent"], started["abort_status"], started["delay_ms"]) == (50, 503, None)
    listed = (await client.get("/v1/chaos", headers=auth())).json()
    assert [e["target"] for e in listed["active"]] == ["web-1"]
    assert listed["recent"] == []
    stopped = (await client.delete("/v1/chaos", headers=auth())).json()
    assert [e["state"] for e in stopped["stopped"]] == ["stopped"]


async def test_a_non_ascii_token_is_a_401_not_a_500(client: httpx.AsyncClient) -> None:
    """Header bytes outside ASCII are compared safely and refused."""
    response = await client.get(
        "/v1/status", headers={"Authorization": "Bearer t\xe9st".encode("latin-1")}
    )
    assert response.status_code == 401


async def test_runtime_errors_are_problems_with_the_reason(
    client: httpx.AsyncClient, target: FakeTarget
) -> None:
    """New instances that never become ready: 503 with the instance's last log lines."""
    from corral.runtime.errors import StartError

    async def failing_scale(service: str, replicas: int) -> None:
        raise StartError(
            service,
            "crash loop: exited with code 3",
            instance="web-2",
            log_tail=["boom: bad config"],
        )

    target.scale = failing_scale  # type: ignore[method-assign]
    response = await client.post("/v1/services/web/scale", json={"replicas": 2}, headers=auth())
    assert response.status_code == 503
    body = response.json()
    assert body["title"] == "instances did not become ready"
    assert "boom: bad config" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/chaos", None),
        ("POST", "/v1/chaos/kill", {"target": "web-1"}),
        ("POST", "/v1/chaos/pause", {"target": "web-1", "seconds": 5}),
        ("POST", "/v1/chaos/gateway", {"service": "web", "abort_status": 503}),
        ("DELETE", "/v1/chaos/chaos-1", None),
        ("DELETE", "/v1/chaos", None),
    ],
)
async def test_chaos_needs_the_admin_token(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A service holding the discovery token can neither start, list nor stop chaos."""
    response = await client.request(method, path, json=body, headers=auth(DISCOVERY))
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"target": "web-1", "seconds": 3601},
        {"target": "web-1", "seconds": 0},
    ],
)
async def test_a_pause_longer_than_an_hour_is_refused(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """Every experiment expires: durations are bounded (0, 1h], or a 422 problem."""
    response = await client.post("/v1/chaos/pause", json=body, headers=auth())
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
