"""problem+json for every error class."""

from __future__ import annotations

from fastapi import HTTPException
from pydantic import BaseModel

from corral.sdk import PROBLEM_JSON, Problem, Service
from corral.sdk.testing import capture_logs, serve_in_process


class Ride(BaseModel):
    rider: str
    seats: int


def make_service() -> Service:
    svc = Service("errors")

    @svc.get("/rides/{ride_id}")
    async def get_ride(ride_id: int) -> dict[str, int]:
        if ride_id == 7:
            raise Problem(
                409,
                "illegal transition",
                detail="ride 7 is finished",
                type="https://corral.dev/problems/ride-state",
                ride_id=7,
            )
        if ride_id == 8:
            raise HTTPException(403, detail="not your ride")
        if ride_id == 9:
            raise RuntimeError("secret internals: db password hunter2")
        return {"id": ride_id}

    @svc.post("/rides")
    async def create(ride: Ride) -> Ride:
        return ride

    return svc


async def test_unknown_path_is_404_problem() -> None:
    """An unmatched path answers 404 as problem+json with the path as instance."""
    async with serve_in_process(make_service()) as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "instance": "/nowhere",
    }


async def test_wrong_method_is_405_problem_with_allow() -> None:
    """A known path with the wrong method answers 405 problem+json and keeps Allow."""
    async with serve_in_process(make_service()) as client:
        response = await client.delete("/rides/1")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["allow"] == "GET"
    assert response.json()["title"] == "Method Not Allowed"


async def test_validation_error_lists_every_location() -> None:
    """A bad body answers 422 with an errors list naming each bad location."""
    async with serve_in_process(make_service()) as client:
        response = await client.post("/rides", json={"seats": "many"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 422
    locations = sorted(tuple(e["loc"]) for e in body["errors"])
    assert locations == [("body", "rider"), ("body", "seats")]
    assert all(e["detail"] and e["type"] for e in body["errors"])


async def test_malformed_json_says_what_is_wrong_and_where() -> None:
    """A body that is not JSON names json.loads' reason and the character, not FastAPI's
    bare "JSON decode error" at location body.<offset>."""
    async with serve_in_process(make_service()) as client:
        response = await client.post(
            "/rides",
            content=b'{"rider": "ada", seats}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == (
        "the request body is not valid JSON: "
        "Expecting property name enclosed in double quotes (at character 17)"
    )
    assert body["errors"] == [
        {
            "loc": ["body", 17],
            "detail": "Expecting property name enclosed in double quotes (at character 17)",
            "type": "json_invalid",
        }
    ]


async def test_path_parameter_validation_is_422_problem() -> None:
    """A path parameter of the wrong type is a 422 problem naming the path location."""
    async with serve_in_process(make_service()) as client:
        response = await client.get("/rides/abc")
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "ride_id"]


async def test_problem_raised_by_handler_keeps_its_fields() -> None:
    """Problem(...) becomes the body: type, title, detail, instance and extensions."""
    async with serve_in_process(make_service()) as client:
        response = await client.get("/rides/7")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "https://corral.dev/problems/ride-state",
        "title": "illegal transition",
        "status": 409,
        "detail": "ride 7 is finished",
        "instance": "/rides/7",
        "ride_id": 7,
    }


async def test_user_http_exception_is_problem() -> None:
    """A plain FastAPI HTTPException raised by a handler is converted to problem+json."""
    async with serve_in_process(make_service()) as client:
        response = await client.get("/rides/8")
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"] == "not your ride"


async def test_unhandled_exception_is_generic_500_and_logged_with_trace() -> None:
    """A crash answers a generic 500 (no internals) and is logged once with trace ids."""
    with capture_logs() as logs:
        async with serve_in_process(make_service()) as client:
            response = await client.get("/rides/9")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
    errors = [line for line in logs if line["event"] == "unhandled exception"]
    assert len(errors) == 1
    assert errors[0]["trace_id"] == body["trace_id"]
    assert "RuntimeError" in errors[0]["exception"]
