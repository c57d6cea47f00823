"""The API's record of chaos runs (``corral chaos run`` reports here when it ends;
``corral chaos list`` and the dashboard read it), the NATS, database and caller-side
faults, and the feed of caller-side faults that services' clients follow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from corral import contract
from corral.api._gate import Access, Rule
from corral.api._problems import ApiProblem
from corral.api._version import API_VERSION
from corral.chaos import MAX_FAULT_SECONDS, ChaosExperiment, Report, valid_id

CHAOS_RUN_RULES = {
    # A report holds every check made during a method: more room than a command.
    f"/{API_VERSION}/chaos/runs": Rule(Access.ADMIN, 2 * 1024 * 1024),
    # What instances follow with the discovery token: which of their calls to fault.
    contract.CALL_FAULTS_WATCH_PATH: Rule(Access.READER, 0),
}


class ChaosRuns(Protocol):
    """The control plane's chaos (corral.control._chaos): the faults added with
    experiment files, and the record of runs. User mistakes raise ApiProblem."""

    def record(self, report: Report) -> Report: ...

    def run_list(self, limit: int = 20) -> list[Report]: ...

    def run(self, run_id: str) -> Report | None: ...

    async def nats(self, mode: str, seconds: float | None) -> ChaosExperiment: ...

    async def database(self, service: str, seconds: float) -> ChaosExperiment: ...

    async def calls(
        self,
        caller: str,
        target: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment: ...

    def watch_calls(self, caller: str | None = None) -> AsyncIterator[dict[str, Any]]: ...

    async def cpu(self, target: str, percent: int, seconds: float) -> ChaosExperiment: ...


class NatsFaultRequest(BaseModel):
    mode: Literal["kill", "restart", "pause"]
    seconds: float | None = Field(
        default=None, gt=0, le=MAX_FAULT_SECONDS, description="How long a pause lasts."
    )


class DatabaseFaultRequest(BaseModel):
    service: str
    seconds: float = Field(default=10.0, gt=0, le=MAX_FAULT_SECONDS)


class CallsFaultRequest(BaseModel):
    caller: str = Field(description="The calling service, whose client injects the fault.")
    target: str = Field(description="The service called.")
    percent: int = Field(default=100, ge=1, le=100, description="Share of calls.")
    abort_status: int | None = Field(default=None, ge=200, le=599)
    delay_ms: int | None = Field(default=None, ge=1, le=60_000)
    seconds: float = Field(
        default=60.0, description=f"At most {MAX_FAULT_SECONDS:g}s (refused in words past it)."
    )


class CpuFaultRequest(BaseModel):
    target: str = Field(description="An instance id, or a service (one random instance).")
    percent: int = Field(default=80, description="Share of the time it is stopped, 1-99.")
    seconds: float = Field(
        default=30.0, description=f"At most {MAX_FAULT_SECONDS:g}s (refused in words past it)."
    )


def chaos_runs_router(
    store: ChaosRuns, *, admin: DependsParam, reader: DependsParam | None = None
) -> APIRouter:
    router = APIRouter()
    v = f"/{API_VERSION}"

    @router.get(f"{v}/chaos/runs", dependencies=[admin], tags=["chaos"])
    async def runs(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[Report]:
        """Finished experiment runs, newest first, with each probe's values and the
        verdict."""
        return store.run_list(limit)

    @router.get(f"{v}/chaos/runs/{{run_id}}", dependencies=[admin], tags=["chaos"])
    async def run(run_id: str) -> Report:
        found = store.run(run_id)
        if found is None:
            raise ApiProblem(404, "no such run", f"{run_id!r} is not among the kept runs")
        return found

    @router.post(f"{v}/chaos/runs", dependencies=[admin], tags=["chaos"])
    async def record(report: Report) -> Report:
        """Keep a finished run (the runner posts its report)."""
        if not valid_id(report.id):
            raise ApiProblem(422, "invalid run id", "run-<digits>, as the runner makes them")
        return store.record(report)

    @router.post(f"{v}/chaos/nats", dependencies=[admin], tags=["chaos"])
    async def nats(body: NatsFaultRequest) -> ChaosExperiment:
        """Kill, restart or pause (for ``seconds``) the embedded NATS server."""
        if body.mode == "pause" and body.seconds is None:
            raise ApiProblem(422, "invalid duration", "a pause needs seconds")
        return await store.nats(body.mode, body.seconds)

    @router.post(f"{v}/chaos/database", dependencies=[admin], tags=["chaos"])
    async def database(body: DatabaseFaultRequest) -> ChaosExperiment:
        """Hold a service's SQLite write lock for ``seconds`` (writers wait, then fail)."""
        return await store.database(body.service, body.seconds)

    @router.post(f"{v}/chaos/calls", dependencies=[admin], tags=["chaos"])
    async def calls(body: CallsFaultRequest) -> ChaosExperiment:
        """Delay and/or abort a share of one service's calls to another, in the caller's
        own client (so no other caller is touched); it ends at its expiry even if the
        control plane dies."""
        return await store.calls(
            body.caller,
            body.target,
            percent=body.percent,
            abort_status=body.abort_status,
            delay_ms=body.delay_ms,
            seconds=body.seconds,
        )

    @router.post(f"{v}/chaos/cpu", dependencies=[admin], tags=["chaos"])
    async def cpu(body: CpuFaultRequest) -> ChaosExperiment:
        """Throttle one instance as a CPU quota would: stopped ``percent``% of every
        100 ms, for ``seconds``."""
        return await store.cpu(body.target, body.percent, body.seconds)

    @router.get(
        contract.CALL_FAULTS_WATCH_PATH,
        dependencies=[reader or admin],
        tags=["chaos"],
        response_model=None,
    )
    async def watch_calls(request: Request, caller: str | None = None) -> EventSourceResponse:
        """Server-sent events ``faults``: the active caller-side faults (of ``caller``'s
        calls), then the whole set again after each change. Instances follow it with the
        discovery token."""

        async def stream() -> AsyncIterator[dict[str, str]]:
            async for faults in store.watch_calls(caller):
                if await request.is_disconnected():
                    return
                yield {"event": "faults", "data": json.dumps(faults)}

        return EventSourceResponse(stream(), ping=15)

    return router
