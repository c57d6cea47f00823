"""Errors the control plane raises become problem+json with the status the API chooses:
a chaos refusal carries no HTTP status of its own (issue 17)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from corral.api._problems import install
from corral.chaos import ChaosError, Refusal


@pytest.mark.parametrize(
    ("refusal", "status"),
    [(Refusal.CONFLICT, 409), (Refusal.INVALID, 422), (Refusal.UNKNOWN, 404)],
)
async def test_a_chaos_refusal_is_a_problem_with_its_status(refusal: Refusal, status: int) -> None:
    app = FastAPI()
    install(app)

    @app.post("/fault")
    async def fault() -> None:
        raise ChaosError(refusal, "already paused", "rides-1 is paused by an experiment")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.post("/fault")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {
        "type": "about:blank",
        "title": "already paused",
        "status": status,
        "detail": "rides-1 is paused by an experiment",
    }


def test_a_chaos_refusal_reads_well_in_the_terminal() -> None:
    error = ChaosError(Refusal.CONFLICT, "nothing to kill", "rides-1 has no process right now")
    assert error.message == "nothing to kill: rides-1 has no process right now"
