"""The control-plane HTTP API served by a running ``corral up`` on 127.0.0.1.

The CLI is a thin client of this API, and so will be the dashboard. Two bearer tokens:
the admin token (file ``.corral/token``, mode 0600) may do everything; the discovery
token, given to service instances, may only read and watch the registry. Every request
passes the :class:`~corral.api._gate.Gate` first: its credentials are checked, and its
body capped, before any of it is read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from corral.api._browser import (
    BROWSER_RULES,
    SessionCookieAuth,
    browser_router,
    mount_assets,
    own_request,
)
from corral.api._chaos_runs import CHAOS_RUN_RULES, ChaosRuns, chaos_runs_router
from corral.api._config import CONFIG_RULES, ConfigTarget, config_router
from corral.api._gate import Access, Gate, Rule, Verifier, token_is
from corral.api._logins import BrowserLogins
from corral.api._problems import ApiProblem, install
from corral.api._telemetry import TELEMETRY_RULES, TelemetrySource, telemetry_router
from corral.api._version import API_VERSION
from corral.api._watch import WatchTarget, watch_router
from corral.chaos import ChaosExperiment, ChaosOverview, ChaosStopped
from corral.runtime.registry import InstanceRecord, Registry, Snapshot
from corral.runtime.status import ChangeAction, OpenCircuit, ServiceChange, SystemStatus


class LogSource(Protocol):
    def read(
        self,
        services: Sequence[str] | None = None,
        since: float | None = None,
        tail: int | None = None,
    ) -> Sequence[Any]: ...

    def follow(
        self, services: Sequence[str] | None = None, since: float | None = None
    ) -> AsyncIterator[Any]: ...


class ChaosTarget(Protocol):
    """Failure-injection experiments (see corral.control._chaos); user mistakes raise
    :class:`ApiProblem`."""

    def overview(self) -> ChaosOverview: ...

    async def kill(self, target: str) -> ChaosExperiment: ...

    async def pause(self, target: str, seconds: float) -> ChaosExperiment: ...

    async def fault(
        self,
        service: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment: ...

    async def stop(self, experiment_id: str) -> ChaosExperiment: ...

    async def stop_all(self) -> list[ChaosExperiment]: ...


class ControlTarget(Protocol):
    """What the API drives: the orchestrator plus its addons (see corral.control)."""

    @property
    def registry(self) -> Registry: ...

    @property
    def logs(self) -> LogSource: ...

    def status(self) -> SystemStatus: ...

    def has_service(self, service: str) -> bool: ...

    async def circuits(self) -> list[dict[str, Any]]: ...

    async def scale(self, service: str, replicas: int) -> None: ...

    async def restart(self, service: str, *, rolling: bool = False) -> None:
        """Raises ServiceStoppedError for a stopped service (nothing to restart)."""

    async def start_service(self, service: str) -> bool:
        """True if it started the stopped service, False if it was running."""

    async def stop_service(self, service: str) -> None: ...

    @property
    def chaos(self) -> ChaosTarget: ...


MAX_CHAOS_SECONDS = 3600.0


class KillRequest(BaseModel):
    target: str = Field(description="An instance id, or a service (one random instance).")


class PauseRequest(BaseModel):
    target: str = Field(description="An instance id, or a service (one random instance).")
    seconds: float = Field(default=10.0, gt=0, le=MAX_CHAOS_SECONDS)


class FaultRequest(BaseModel):
    service: str = Field(description="The service whose gateway routes get the fault.")
    percent: int = Field(default=100, ge=1, le=100, description="Share of requests.")
    abort_status: int | None = Field(default=None, ge=200, le=599)
    delay_ms: int | None = Field(default=None, ge=1, le=60_000)
    seconds: float = Field(default=60.0, gt=0, le=MAX_CHAOS_SECONDS)


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=64, description="Desired number of instances.")


class RestartRequest(BaseModel):
    rolling: bool = Field(
        default=False, description="One instance at a time, replacement ready first."
    )


class Accepted(BaseModel):
    ok: bool = True
    detail: str


_bearer = HTTPBearer(auto_error=False)
_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def create_app(
    target: ControlTarget,
    *,
    admin_token: str,
    discovery_token: str,
    request_shutdown: Callable[[], Coroutine[Any, Any, None]],
    telemetry: TelemetrySource | None = None,
    chaos_runs: ChaosRuns | None = None,
) -> FastAPI:
    """Build the API app for one running system (``telemetry``: metrics and traces)."""
    app = FastAPI(
        title="Corral control plane",
        version=API_VERSION,
        description="Status, scaling, restarts, logs and the instance registry of a "
        "running Corral system. All endpoints need a bearer token.",
    )
    install(app)
    background: set[asyncio.Task[None]] = set()

    # The gate checks every request before its body is read; these dependencies say
    # the same per endpoint (and put the bearer scheme in the OpenAPI document).
    def _check(credentials: HTTPAuthorizationCredentials | None, *allowed: str) -> None:
        if credentials is None:
            raise ApiProblem(401, "missing bearer token")
        if not token_is(credentials.credentials, *allowed):
            raise ApiProblem(401, "invalid bearer token")

    def admin(credentials: _Credentials) -> None:
        _check(credentials, admin_token)

    def reader(credentials: _Credentials) -> None:
        _check(credentials, admin_token, discovery_token)

    def known(service: str) -> str:
        if not target.has_service(service):
            raise ApiProblem(404, "unknown service", f"no service named {service!r}")
        return service

    Admin = Depends(admin)
    Reader = Depends(reader)

    @app.get(f"/{API_VERSION}/status", dependencies=[Admin], tags=["system"])
    async def status() -> SystemStatus:
        """The system: services, instances, addon endpoints (e.g. gateway_url) and the
        circuit breakers that services report open or half-open."""
        circuits = [OpenCircuit.model_validate(c) for c in await target.circuits()]
        return target.status().model_copy(update={"open_circuits": circuits})

    @app.get(f"/{API_VERSION}/instances", dependencies=[Admin], tags=["system"])
    async def instances() -> list[InstanceRecord]:
        """Every instance the registry knows, components included."""
        return list(target.registry.snapshot().instances)

    def changed(service: str, action: ChangeAction, how: str | None = None) -> ServiceChange:
        return ServiceChange.of(target.status(), service, action, how=how)

    @app.post(
        f"/{API_VERSION}/services/{{service}}/scale",
        dependencies=[Admin],
        tags=["services"],
    )
    async def scale(service: str, body: ScaleRequest) -> ServiceChange:
        """Set the number of instances; returns once new instances are ready."""
        await target.scale(known(service), body.replicas)
        return changed(service, ChangeAction.SCALED)

    @app.post(
        f"/{API_VERSION}/services/{{service}}/restart",
        dependencies=[Admin],
        tags=["services"],
    )
    async def restart(service: str, body: RestartRequest | None = None) -> ServiceChange:
        """Restart every instance; with rolling, one at a time keeping N-1 ready. A
        stopped service has nothing to restart: 409 (start it instead)."""
        rolling = body.rolling if body else False
        await target.restart(known(service), rolling=rolling)
        return changed(service, ChangeAction.RESTARTED, "rolling" if rolling else None)

    @app.post(f"/{API_VERSION}/services/{{service}}/start", dependencies=[Admin], tags=["services"])
    async def start(service: str) -> ServiceChange:
        """Start a stopped service with as many instances as it had before it stopped;
        returns once they are ready. A running service is left as it is (``unchanged``)."""
        started = await target.start_service(known(service))
        return changed(service, ChangeAction.STARTED if started else ChangeAction.UNCHANGED)

    @app.post(f"/{API_VERSION}/services/{{service}}/stop", dependencies=[Admin], tags=["services"])
    async def stop(service: str) -> ServiceChange:
        """Stop every instance of a service gracefully (scale to 0)."""
        await target.stop_service(known(service))
        return changed(service, ChangeAction.STOPPED)

    @app.post(f"/{API_VERSION}/down", dependencies=[Admin], tags=["system"])
    async def down() -> Accepted:
        """Stop the whole system (reverse dependency order) and end `corral up`."""
        # Kept referenced: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(request_shutdown())
        background.add(task)
        task.add_done_callback(background.discard)
        return Accepted(detail="stopping")

    @app.get(f"/{API_VERSION}/chaos", dependencies=[Admin], tags=["chaos"])
    async def chaos() -> ChaosOverview:
        """Failure-injection experiments: the active ones and the recently ended."""
        return target.chaos.overview()

    @app.post(f"/{API_VERSION}/chaos/kill", dependencies=[Admin], tags=["chaos"])
    async def chaos_kill(body: KillRequest) -> ChaosExperiment:
        """SIGKILL one instance (its supervisor replaces it)."""
        return await target.chaos.kill(body.target)

    @app.post(f"/{API_VERSION}/chaos/pause", dependencies=[Admin], tags=["chaos"])
    async def chaos_pause(body: PauseRequest) -> ChaosExperiment:
        """SIGSTOP one instance, SIGCONT after ``seconds`` (enforced by the control plane)."""
        return await target.chaos.pause(body.target, body.seconds)

    @app.post(f"/{API_VERSION}/chaos/gateway", dependencies=[Admin], tags=["chaos"])
    async def chaos_gateway(body: FaultRequest) -> ChaosExperiment:
        """Abort and/or delay a share of the gateway's requests to a service, live."""
        return await target.chaos.fault(
            body.service,
            percent=body.percent,
            abort_status=body.abort_status,
            delay_ms=body.delay_ms,
            seconds=body.seconds,
        )

    @app.delete(f"/{API_VERSION}/chaos/{{experiment}}", dependencies=[Admin], tags=["chaos"])
    async def chaos_stop(experiment: str) -> ChaosExperiment:
        """End one active experiment now."""
        return await target.chaos.stop(experiment)

    @app.delete(f"/{API_VERSION}/chaos", dependencies=[Admin], tags=["chaos"])
    async def chaos_stop_all() -> ChaosStopped:
        """End every active experiment now."""
        return ChaosStopped(stopped=await target.chaos.stop_all())

    @app.get(f"/{API_VERSION}/logs", dependencies=[Admin], tags=["logs"], response_model=None)
    async def logs(
        request: Request,
        service: Annotated[list[str] | None, Query()] = None,
        since: Annotated[float | None, Query(description="Unix time")] = None,
        tail: Annotated[int | None, Query(ge=0)] = None,
        follow: bool = False,
    ) -> Any:
        """Merged log lines; with follow, a server-sent-event stream of new lines."""
        for name in service or []:
            known(name)
        lines = [_line(x) for x in target.logs.read(service, since, tail)]
        if not follow:
            return lines

        async def stream() -> AsyncIterator[dict[str, str]]:
            for line in lines:
                yield {"event": "log", "data": json.dumps(line)}
            last = lines[-1]["t"] if lines else since
            async for entry in target.logs.follow(service, last):
                if await request.is_disconnected():
                    return
                yield {"event": "log", "data": json.dumps(_line(entry))}

        return EventSourceResponse(stream(), ping=15)

    @app.get(f"/{API_VERSION}/registry", dependencies=[Reader], tags=["registry"])
    async def registry() -> Snapshot:
        """The current registry snapshot (versioned)."""
        return target.registry.snapshot()

    @app.get(
        f"/{API_VERSION}/registry/watch",
        dependencies=[Reader],
        tags=["registry"],
        response_model=None,
    )
    async def watch(request: Request) -> EventSourceResponse:
        """Server-sent events: the current snapshot, then each newer one."""

        async def stream() -> AsyncIterator[dict[str, str]]:
            async for snapshot in target.registry.watch():
                if await request.is_disconnected():
                    return
                yield {
                    "event": "snapshot",
                    "id": str(snapshot.version),
                    "data": json.dumps(snapshot.to_json()),
                }

        return EventSourceResponse(stream(), ping=15)

    logins = BrowserLogins()
    app.include_router(browser_router(logins, admin=Admin))
    mount_assets(app)
    rules: dict[str, Rule] = {**_DOCUMENTS, **_REGISTRY, **BROWSER_RULES}
    verifiers: dict[Access, Verifier] = {
        Access.PUBLIC: lambda scope, token, params: True,
        Access.ADMIN: lambda scope, token, params: token_is(token, admin_token),
        Access.READER: lambda scope, token, params: token_is(token, admin_token, discovery_token),
        Access.DASHBOARD: lambda scope, token, params: own_request(scope),
    }
    if chaos_runs is not None:
        app.include_router(chaos_runs_router(chaos_runs, admin=Admin, reader=Reader))
        rules.update(CHAOS_RUN_RULES)
    if telemetry is not None:
        app.include_router(telemetry_router(telemetry, admin=Admin))
        rules.update(TELEMETRY_RULES)
        ingest = telemetry.ingest_token
        verifiers[Access.INGEST] = lambda scope, token, params: token_is(token, ingest)
    if isinstance(target, ConfigTarget):
        config = target.config
        app.include_router(config_router(config, admin=Admin))
        rules.update(CONFIG_RULES)

        def instance(scope: Any, token: str | None, params: Any) -> bool:
            name = str(params.get("instance", ""))
            return token is not None and config.instance_service(name, token) is not None

        verifiers[Access.INSTANCE] = instance
    if isinstance(target, WatchTarget):
        app.include_router(watch_router(target, admin=Admin))
    # Added first, so it runs after the session cookie has stood in for the admin token.
    app.add_middleware(Gate, rules=rules, verifiers=verifiers)
    app.add_middleware(SessionCookieAuth, logins=logins, admin_token=admin_token)
    return app


_NO_BODY = 0

_DOCUMENTS = {
    path: Rule(Access.PUBLIC, _NO_BODY)
    for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
}
"""The API documents itself to anyone (it holds no data)."""

_REGISTRY = {
    f"/{API_VERSION}/registry": Rule(Access.READER, _NO_BODY),
    f"/{API_VERSION}/registry/watch": Rule(Access.READER, _NO_BODY),
}
"""What the discovery token may read here: the registry. (The only other route it
reaches is the caller-side fault feed, declared with the chaos routes.)"""


def _line(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict):
        return entry
    if hasattr(entry, "to_json"):
        return dict(entry.to_json())
    return asdict(entry)
