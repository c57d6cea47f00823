"""The API's record of chaos runs (``corral chaos run`` reports here when it ends;
``corral chaos list`` and the dashboard read it)."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Query
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, Field

from corral.api._gate import Access, Rule
from corral.api._problems import ApiProblem
from corral.api._version import API_VERSION
from corral.chaos import MAX_FAULT_SECONDS, ChaosExperiment, Report, valid_id

CHAOS_RUN_RULES = {
    # A report holds every check made during a method: more room than a command.
    f"/{API_VERSION}/chaos/runs": Rule(Access.ADMIN, 2 * 1024 * 1024),
}


class ChaosRuns(Protocol):
    """The control plane's chaos (corral.control._chaos): the faults added with
    experiment files, and the record of runs. User mistakes raise ApiProblem."""

    def record(self, report: Report) -> Report: ...

    def run_list(self, limit: int = 20) -> list[Report]: ...

    def run(self, run_id: str) -> Report | None: ...

    async def nats(self, mode: str, seconds: float | None) -> ChaosExperiment: ...

    async def database(self, service: str, seconds: float) -> ChaosExperiment: ...


class NatsFaultRequest(BaseModel):
    mode: Literal["kill", "restart", "pause"]
    seconds: float | None = Field(
        default=None, gt=0, le=MAX_FAULT_SECONDS, description="How long a pause lasts."
    )


class DatabaseFaultRequest(BaseModel):
    service: str
    seconds: float = Field(default=10.0, gt=0, le=MAX_FAULT_SECONDS)


def chaos_runs_router(store: ChaosRuns, *, admin: DependsParam) -> APIRouter:
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

    return router
