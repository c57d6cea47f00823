"""The API's record of chaos runs (``corral chaos run`` reports here when it ends;
``corral chaos list`` and the dashboard read it)."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Query
from fastapi.params import Depends as DependsParam

from corral.api._gate import Access, Rule
from corral.api._problems import ApiProblem
from corral.api._version import API_VERSION
from corral.chaos import Report, valid_id

CHAOS_RUN_RULES = {
    # A report holds every check made during a method: more room than a command.
    f"/{API_VERSION}/chaos/runs": Rule(Access.ADMIN, 2 * 1024 * 1024),
}


class ChaosRuns(Protocol):
    def record(self, report: Report) -> Report: ...

    def runs(self, limit: int = 20) -> list[Report]: ...

    def get(self, run_id: str) -> Report | None: ...


def chaos_runs_router(store: ChaosRuns, *, admin: DependsParam) -> APIRouter:
    router = APIRouter()
    v = f"/{API_VERSION}"

    @router.get(f"{v}/chaos/runs", dependencies=[admin], tags=["chaos"])
    async def runs(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[Report]:
        """Finished experiment runs, newest first, with each probe's values and the
        verdict."""
        return store.runs(limit)

    @router.get(f"{v}/chaos/runs/{{run_id}}", dependencies=[admin], tags=["chaos"])
    async def run(run_id: str) -> Report:
        found = store.get(run_id)
        if found is None:
            raise ApiProblem(404, "no such run", f"{run_id!r} is not among the kept runs")
        return found

    @router.post(f"{v}/chaos/runs", dependencies=[admin], tags=["chaos"])
    async def record(report: Report) -> Report:
        """Keep a finished run (the runner posts its report)."""
        if not valid_id(report.id):
            raise ApiProblem(422, "invalid run id", "run-<digits>, as the runner makes them")
        return store.record(report)

    return router
