"""Logs: one JSON object per line with the contract fields, secrets never printed."""

from __future__ import annotations

import asyncio
import json

from pydantic import Field, SecretStr

from corral import contract
from corral.sdk import Service, ServiceSettings
from corral.sdk.testing import capture_logs, serve_in_process

TOKEN = "tok-3f9a1c77e2"
PLAIN_SECRET = "marked-but-not-secretstr"


class Settings(ServiceSettings):
    api_token: SecretStr
    webhook_key: str = Field(default=PLAIN_SECRET, json_schema_extra={"secret": True})


def make_service() -> Service[Settings]:
    svc = Service("logger", settings=Settings)

    @svc.get("/work")
    async def work() -> dict[str, str]:
        svc.log.info("doing work", token=svc.settings.api_token.get_secret_value())
        svc.log.warning("nested", data={"key": svc.settings.webhook_key})
        return {"ok": "yes"}

    @svc.get("/crash")
    async def crash() -> None:
        raise ValueError(f"bad token {svc.settings.api_token.get_secret_value()}")

    return svc


async def test_request_lines_carry_contract_fields() -> None:
    """Every line of a request has timestamp, level, service, instance, request and trace ids."""
    env = {"API_TOKEN": TOKEN, contract.INSTANCE: "logger-3"}
    with capture_logs() as logs:
        async with serve_in_process(make_service(), env=env) as client:
            response = await client.get("/work", headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    request_lines = [line for line in logs if line.get("request_id") == "req-42"]
    assert [line["event"] for line in request_lines] == ["doing work", "nested", "request"]
    for line in request_lines:
        for key in ("timestamp", "level", "service", "instance", "trace_id", "span_id"):
            assert line[key], key
        assert line["service"] == "logger"
        assert line["instance"] == "logger-3"
    access = request_lines[-1]
    assert access["route"] == "/work"
    assert access["status"] == 200
    assert len({line["trace_id"] for line in request_lines}) == 1


async def test_secret_values_never_appear_in_any_line(capsys: object) -> None:
    """SecretStr and secret-marked values are redacted everywhere, tracebacks included."""
    env = {"API_TOKEN": TOKEN}
    with capture_logs() as logs:
        async with serve_in_process(make_service(), env=env) as client:
            await client.get("/work")
            await client.get("/crash")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "nothing was printed"
    for line in lines:
        json.loads(line)  # every printed line is one JSON object
    assert TOKEN not in out
    assert PLAIN_SECRET not in out
    dumped = json.dumps(logs)
    assert TOKEN not in dumped
    assert PLAIN_SECRET not in dumped
    assert "**********" in dumped


async def test_invalid_request_id_is_replaced() -> None:
    """A request id with control characters is not echoed; a fresh one is issued."""
    async with serve_in_process(make_service(), env={"API_TOKEN": TOKEN}) as client:
        response = await client.get("/work", headers={"x-request-id": "a\tb"})
    assert response.headers["x-request-id"] != "a\tb"
    assert len(response.headers["x-request-id"]) == 32


async def test_console_format_is_for_humans() -> None:
    """CORRAL_LOG_FORMAT=console prints non-JSON lines (still redacted)."""
    env = {"API_TOKEN": TOKEN, contract.LOG_FORMAT: "console"}
    with capture_logs() as logs:
        async with serve_in_process(make_service(), env=env) as client:
            await client.get("/work")
    assert logs
    assert all("line" in entry for entry in logs)
    assert any("doing work" in entry["line"] for entry in logs)
    assert TOKEN not in json.dumps(logs)


async def test_contract_secrets_are_redacted_too(capsys: object) -> None:
    """The discovery token and a password in NATS_URL (as written, percent-encoded) never
    appear, although the service's settings do not declare them."""
    svc = Service("leaky")
    discovery_token = "disc-7d1e0b99a4"
    nats_password = "p@ss/w0rd!"

    @svc.get("/leak")
    async def leak() -> dict[str, str]:
        import os

        svc.log.info(
            "env", token=os.environ[contract.DISCOVERY_TOKEN], url=os.environ[contract.NATS_URL]
        )
        return {"ok": "yes"}

    env = {
        contract.DISCOVERY_TOKEN: discovery_token,
        contract.NATS_URL: "nats://bus:p%40ss%2Fw0rd%21@127.0.0.1:4222",
    }
    async with serve_in_process(svc, env=env) as client:
        await client.get("/leak")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "env" in out
    assert discovery_token not in out
    assert "p%40ss%2Fw0rd%21" not in out
    assert nats_password not in out


async def test_warnings_leave_at_once_with_the_lines_before_them() -> None:
    """On a running loop info lines wait for the end of the loop pass (one write for
    all), but a warning or worse is written at once, after the lines logged before it."""
    import io

    from corral.sdk._logging import LineWriter

    out = io.StringIO()
    writer = LineWriter(out)
    writer.info("first")
    assert out.getvalue() == ""  # batched until the loop pass ends
    writer.error("second")
    assert out.getvalue() == "first\nsecond\n"
    writer.info("third")
    await asyncio.sleep(0)
    assert out.getvalue() == "first\nsecond\nthird\n"
