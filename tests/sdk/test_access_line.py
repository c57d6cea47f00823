"""The access line's fast path: same line as the structlog chain, redacted, fallbacks kept."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import structlog
from pydantic import SecretStr

from corral import contract
from corral.sdk import Service, ServiceSettings, _logging
from corral.sdk.testing import capture_logs, serve_in_process

# A quote, a backslash and non-ASCII: three escaping rules a redactor can trip over.
SECRET = 'p\u00e4ss"wo\\rd-9f1c'


class Settings(ServiceSettings):
    api_token: SecretStr


def make_service() -> Service[Settings]:
    svc = Service("access", settings=Settings)

    @svc.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        structlog.contextvars.bind_contextvars(customer="c-7")
        return {"item": item}

    return svc


def _chain_line(**fields: Any) -> dict[str, Any]:
    """What the generic structlog chain renders for the access event."""
    lines: list[str] = []
    _logging.WRITER.capturers.append(lines.append)
    try:
        structlog.get_logger().info("request", **fields)
    finally:
        _logging.WRITER.capturers.remove(lines.append)
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


async def test_fast_line_equals_the_structlog_chain() -> None:
    """Same keys in the same order and the same values (but the clock) as log.info."""
    async with serve_in_process(make_service(), env={"API_TOKEN": "t"}):
        assert _logging.fast_access
        structlog.contextvars.bind_contextvars(customer="c-7", route="bound-loses")
        try:
            fields: dict[str, Any] = {
                "method": "GET",
                "path": "/items/1",
                "route": "/items/{item}",
                "status": 200,
                "duration_ms": 1.234,
            }
            chain = _chain_line(**fields)
            fast = json.loads(
                _logging.access_line(**fields, request_id="r-1", trace_id=None, span_id=None)
            )
        finally:
            structlog.contextvars.clear_contextvars()
    chain.pop("timestamp")
    stamp = fast.pop("timestamp")
    # Outside a request the chain has no request id: the fast path is given one.
    assert fast.pop("request_id") == "r-1"
    assert list(fast) == list(chain)
    assert fast == chain
    assert fast["route"] == "/items/{item}"  # explicit fields beat bound ones
    assert stamp.endswith("Z")
    assert len(stamp) == len("2026-01-31T12:00:00.123456Z")


async def test_access_line_of_a_request_has_every_contract_field() -> None:
    """A served request's line has the contract fields, bound context and the ids."""
    env = {"API_TOKEN": "t", contract.INSTANCE: "access-1"}
    with capture_logs() as logs:
        async with serve_in_process(make_service(), env=env) as client:
            response = await client.get("/items/42", headers={"x-request-id": "req-7"})
    structlog.contextvars.clear_contextvars()
    [line] = [entry for entry in logs if entry.get("event") == "request"]
    assert line["request_id"] == response.headers["x-request-id"] == "req-7"
    for key in ("timestamp", "level", "service", "instance", "trace_id", "span_id"):
        assert line[key], key
    assert line["instance"] == "access-1"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/items/{item}", 200)
    assert isinstance(line["duration_ms"], float)
    assert len(line["trace_id"]) == 32
    assert len(line["span_id"]) == 16
    assert line["customer"] == "c-7"  # bound by the handler, merged as structlog does


async def test_secrets_in_the_fast_line_are_redacted(capsys: Any) -> None:
    """A secret in the raw path (quote, backslash, non-ASCII) never reaches stdout."""
    with capture_logs() as logs:
        async with serve_in_process(make_service(), env={"API_TOKEN": SECRET}) as client:
            await client.get("/items/" + SECRET)
    structlog.contextvars.clear_contextvars()
    out = capsys.readouterr().out
    [line] = [entry for entry in logs if entry.get("event") == "request"]
    assert line["path"] == "/items/" + _logging.REDACTED
    for escaped in (SECRET, json.dumps(SECRET)[1:-1], json.dumps(SECRET, ensure_ascii=False)[1:-1]):
        assert escaped not in out
        assert escaped not in json.dumps(logs, ensure_ascii=False)


async def test_console_and_quiet_levels_fall_back_to_structlog() -> None:
    """Console format keeps the human renderer; a level above info drops access lines."""
    env = {"API_TOKEN": "t", contract.LOG_FORMAT: "console"}
    with capture_logs() as logs:
        async with serve_in_process(make_service(), env=env) as client:
            assert not _logging.fast_access
            await client.get("/items/1")
    structlog.contextvars.clear_contextvars()
    assert any("/items/{item}" in entry.get("line", "") for entry in logs)

    quiet = make_service()
    quiet.log_level = "warning"
    with capture_logs() as logs:
        async with serve_in_process(quiet, env={"API_TOKEN": "t"}) as client:
            assert not _logging.fast_access
            await client.get("/items/1")
    structlog.contextvars.clear_contextvars()
    assert not [entry for entry in logs if entry.get("event") == "request"]


def test_rendering_never_loses_a_line() -> None:
    """Values orjson refuses (a 70-bit integer) still render, through the stdlib."""
    line = _logging.dumps({"big": 2**70, "text": "\u00e9"})
    assert json.loads(line) == {"big": 2**70, "text": "\u00e9"}


class _Stream(io.StringIO):
    """Records each write and flush; writes count as system calls, as on stdout under
    PYTHONUNBUFFERED=1."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_lines_outside_a_loop_are_flushed_at_once() -> None:
    """Without a running event loop every line is flushed as it is written."""
    stream = _Stream()
    _logging.LineWriter(stream).msg("one")
    assert stream.flushed == ["one\n"]


async def test_lines_on_a_loop_leave_in_one_write_per_loop_pass() -> None:
    """Lines written in one loop pass leave in one write and one flush, before the next
    pass ends (even where every write is a system call)."""
    stream = _Stream()
    writer = _logging.LineWriter(stream)
    writer.msg("one")
    writer.msg("two")
    assert stream.writes == stream.flushed == []
    await asyncio.sleep(0)
    assert stream.flushed == ["one\ntwo\n"]
    writer.msg("three")
    await asyncio.sleep(0)
    assert stream.writes == ["one\ntwo\n", "three\n"]


async def test_lines_of_an_unfinished_pass_are_written_at_exit() -> None:
    """flush_pending (the atexit hook) writes lines whose loop pass never ended."""
    stream = _Stream()
    writer = _logging.LineWriter(stream)
    writer.msg("last words")
    writer.flush_pending()
    assert stream.writes == ["last words\n"]
    await asyncio.sleep(0)  # the pass's own flush finds nothing left
    assert stream.writes == ["last words\n"]


def _assert_fast_equals_chain(fields: dict[str, Any]) -> None:
    chain = _chain_line(**fields)
    fast = json.loads(
        _logging.access_line(**fields, request_id="r-2", trace_id="a" * 32, span_id="b" * 16)
    )
    chain.pop("timestamp")
    fast.pop("timestamp")
    # Outside a request the chain has no ids: the fast path is given them.
    assert fast.pop("request_id") == "r-2"
    assert (fast.pop("trace_id"), fast.pop("span_id")) == ("a" * 32, "b" * 16)
    assert list(fast) == list(chain)
    assert fast == chain


async def test_fast_line_without_bound_context_equals_the_chain() -> None:
    """With no structlog context bound (none ever, or none in this context) the line skips
    the merge and still equals the chain's."""
    fields: dict[str, Any] = {
        "method": "POST",
        "path": "/items",
        "route": "/items",
        "status": 201,
        "duration_ms": 0.5,
    }
    registry = structlog.contextvars._CONTEXT_VARS
    saved = dict(registry)
    async with serve_in_process(make_service(), env={"API_TOKEN": "t"}):
        try:
            registry.clear()  # as in a process that never bound anything
            assert _logging._nothing_bound()
            _assert_fast_equals_chain(fields)
            structlog.contextvars.bind_contextvars(probe=1)
            assert not _logging._nothing_bound()
            structlog.contextvars.unbind_contextvars("probe")  # registered, bound to nothing
            assert registry
            assert _logging._nothing_bound()
            _assert_fast_equals_chain(fields)
        finally:
            registry.clear()
            registry.update(saved)
