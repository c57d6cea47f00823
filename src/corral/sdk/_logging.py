"""Logging: structlog, one JSON object per line on stdout (or console lines for humans).

Every line carries timestamp, level, service, instance, request_id, trace_id and span_id.
Records from the standard library (uvicorn, SQLAlchemy, Alembic) go through the same
processors, so stdout holds nothing but these lines. Secret values are redacted from the
*rendered* line, which also catches secrets inside exception text and nested values.

``CORRAL_LOG_FORMAT=ecs`` renders the same lines with Elastic Common Schema field names
(``@timestamp``, ``log.level``, ``message``, ``service.name``, ``trace.id``...; see
:data:`ECS_FIELDS`), for a log stack that indexes ECS; the default stays ``json``, whose
names the dashboard, ``corral logs`` and the kept log index read (they read both).

Lines are rendered with orjson (about 15x faster than ``json.dumps``). The access line,
one per request, skips structlog's generic processor chain: :func:`access_line` builds
the same fields in the same order with the same dict operations and the line then leaves
through the same redacting :class:`LineWriter` (``bench/sdk_overhead.py`` measured the
chain at about a quarter of the SDK's per-request cost).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson
from opentelemetry import trace

from corral import contract
from corral.sdk._context import request_id_var
from corral.sdk._secrets import REDACTED, SECRET_FORMS, redact, register_secrets

# structlog imports rich, where it is installed, for pretty console tracebacks: about 40%
# of what importing the SDK costs beyond FastAPI, paid by every instance at every start
# (bench/startup.py). Services log JSON lines, or plain console lines with plain
# tracebacks (rich's show local variables, where a secret could be), so structlog is
# imported as if rich were absent. A process that imported rich first keeps it as it is.
_HIDE_RICH = "rich" not in sys.modules
if _HIDE_RICH:
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import structlog
    from structlog.typing import EventDict, Processor, WrappedLogger
finally:
    if _HIDE_RICH:
        del sys.modules["rich"]


__all__ = [
    "ECS_FIELDS",
    "ECS_VERSION",
    "REDACTED",
    "LineWriter",
    "access_line",
    "configure_logging",
    "fast_access",
    "get_logger",
    "redact",
    "register_secrets",
]

_static: dict[str, str] = {}

fast_access = False
"""True when access lines are JSON at a level that is logged: use :func:`access_line`."""


def dumps(obj: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """One JSON line (structlog ``serializer`` signature)."""
    try:
        return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # orjson refuses a few things the standard library renders (integers beyond
        # 64 bits, a ``default`` returning another unknown type): never lose the line.
        return json.dumps(obj, default=default if default is not None else repr)


_stamp: tuple[int, str] = (-1, "")


def timestamp() -> str:
    """UTC ISO 8601 with microseconds, ``2026-01-31T12:00:00.123456Z``.

    ``datetime.now(utc).isoformat()`` costs about 2 us; the formatted second is cached,
    and ``%`` formatting is twice as fast as an f-string with a format spec.
    """
    global _stamp  # a one-entry cache; one tuple, so other threads read a matching pair
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    cached, prefix = _stamp
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamp = (second, prefix)
    return "%s.%06dZ" % (prefix, nanos // 1000)  # noqa: UP031 - see above


def _add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict["timestamp"] = timestamp()
    return event_dict


def _add_static(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key, value in _static.items():
        event_dict.setdefault(key, value)
    return event_dict


def _add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


class LineWriter:
    """The one place log lines leave the process: redacts, writes, feeds capturers.

    Outside an event loop every line is written and flushed at once. On a running loop
    lines are kept until the end of the current loop pass and then leave in one
    ``write`` and one flush, so the lines of all requests that finish in one pass cost
    one ``write(2)``; a line waits microseconds, never for more traffic. The writer
    keeps the lines itself rather than leaving them in the stream's buffer: with
    ``PYTHONUNBUFFERED=1`` (which the runtime sets for every instance) stdout writes
    through, and each line was a system call of its own (a tenth of the SDK's cost per
    request). Lines still pending at exit are written by an ``atexit`` hook.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.capturers: list[Callable[[str], None]] = []
        # Only the loop's own thread adds to or takes its entries.
        self._pending: dict[tuple[asyncio.AbstractEventLoop, TextIO], list[str]] = {}
        atexit.register(self.flush_pending)

    def msg(self, line: str) -> None:
        if SECRET_FORMS:  # a call less per line while there is nothing to redact
            line = redact(line)
        for capture in self.capturers:
            capture(line)
        stream = self._stream or sys.stdout
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a thread without a loop, or no loop at all
            stream.write(line + "\n")
            stream.flush()
            return
        key = (loop, stream)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = [line]
            loop.call_soon(self._flush, key)
        else:
            pending.append(line)

    def _flush(self, key: tuple[asyncio.AbstractEventLoop, TextIO]) -> None:
        lines = self._pending.pop(key, None)
        if lines:
            # stdout closed or its reader gone: there is nowhere left to log to.
            with contextlib.suppress(OSError, ValueError):
                key[1].write("\n".join(lines) + "\n")
                key[1].flush()

    def flush_pending(self) -> None:
        """Write the lines of loop passes that never ended (a loop stopped for good)."""
        for key in list(self._pending):
            self._flush(key)

    def urgent(self, line: str) -> None:
        """A warning or worse leaves at once, with the lines before it: it may be the
        last thing a process says before the loop blocks or the process is killed."""
        self.msg(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # written at once already
            return
        self._flush((loop, self._stream or sys.stdout))  # this loop's lines only

    # structlog calls the method named after the level.
    debug = info = log = msg
    warning = warn = error = critical = exception = fatal = urgent


WRITER = LineWriter()


class _WriterHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            WRITER.msg(self.format(record))
        except Exception:
            self.handleError(record)


ECS_VERSION = "8.11.0"
"""The Elastic Common Schema version the ``ecs`` format's names follow."""

ECS_FIELDS = {
    "timestamp": "@timestamp",
    "level": "log.level",
    "event": "message",
    "logger": "log.logger",
    "service": "service.name",
    "instance": "service.node.name",
    "trace_id": "trace.id",
    "span_id": "span.id",
    "request_id": "http.request.id",
    "method": "http.request.method",
    "path": "url.path",
    "route": "http.route",
    "status": "http.response.status_code",
    "exception": "error.stack_trace",
}
"""The SDK's field names -> ECS's. Other fields keep their names (ECS allows custom
fields); ``duration_ms`` also becomes ECS's ``event.duration`` (nanoseconds)."""


def ecs_fields(_: WrappedLogger | None, __: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: the line's fields under ECS names, plus ``ecs.version``."""
    out: EventDict = {}
    for key, value in event_dict.items():
        out[ECS_FIELDS.get(key, key)] = value
    duration = event_dict.get("duration_ms")
    if isinstance(duration, int | float):
        out["event.duration"] = int(duration * 1_000_000)
    out["ecs.version"] = ECS_VERSION
    return out


def _shared_processors(console: bool) -> list[Processor]:
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_timestamp,
        _add_static,
        _add_request_context,
    ]
    if not console:
        chain.append(structlog.processors.format_exc_info)
    return chain


def _configure_structlog(
    *, console: bool, level: int, cache: bool, ecs: bool = False
) -> list[Processor]:
    """structlog's process-wide configuration: the shared chain, then the renderer,
    lines out through :data:`WRITER` (which redacts). Returns the final processors (ECS
    names, when asked, and the renderer)."""
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        if console
        else structlog.processors.JSONRenderer(serializer=dumps)
    )
    final: list[Processor] = [ecs_fields, renderer] if ecs else [renderer]
    structlog.configure(
        processors=[*_shared_processors(console), *final],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: WRITER,
        cache_logger_on_first_use=cache,
    )
    return final


def configure_logging(
    *, service: str, instance: str, log_format: str = "json", level: str = "info"
) -> None:
    """Configure structlog and the standard library root logger (idempotent, process-wide).
    ``log_format``: json (the default), ecs (JSON with ECS names) or console."""
    console = log_format == "console"
    ecs = log_format == "ecs"
    _static.clear()
    _static.update(service=service, instance=instance)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    global fast_access  # process-wide, like structlog's own configuration
    # The fast access line has the default names: ECS lines take the structlog chain.
    fast_access = not console and not ecs and numeric <= logging.INFO
    shared = _shared_processors(console)
    final = _configure_structlog(console=console, level=numeric, cache=True, ecs=ecs)
    handler = _WriterHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _WriterHandler) or not isinstance(old, logging.NullHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # The SDK writes the one access line per request; the server's own goes.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO; services log their calls themselves.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


_merge_contextvars = structlog.contextvars.merge_contextvars
# structlog's registry of the variables bind_contextvars created (private, hence the
# fallback): when none holds a value here, merge_contextvars would add nothing, and
# checking costs a few lookups where merging copies and walks the whole context.
_structlog_vars: dict[str, contextvars.ContextVar[Any]] | None = getattr(
    structlog.contextvars, "_CONTEXT_VARS", None
)


def _nothing_bound() -> bool:
    if _structlog_vars is None:
        return False
    # A copy: another thread binding a new key would change the dict mid-iteration.
    for var in tuple(_structlog_vars.values()):  # noqa: SIM110 - all() adds a generator
        if var.get() is not Ellipsis:
            return False
    return True


def access_line(
    method: str,
    path: str,
    route: str,
    status: int,
    duration_ms: float,
    request_id: str,
    trace_id: str | None,
    span_id: str | None,
) -> str:
    """The access line exactly as ``log.info("request", ...)`` renders it through the
    JSON processor chain (same keys, same order, same precedence), at a fraction of the
    cost. Write it with ``WRITER.msg``, which redacts."""
    event: EventDict = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "event": "request",
    }
    if not _nothing_bound():
        _merge_contextvars(None, "info", event)
    event["level"] = "info"
    event["timestamp"] = timestamp()
    for key, value in _static.items():
        event.setdefault(key, value)
    event.setdefault("request_id", request_id)
    if trace_id is not None:
        event.setdefault("trace_id", trace_id)
        event.setdefault("span_id", span_id)
    try:
        # Keys are strings: orjson needs no options (OPT_NON_STR_KEYS costs 0.1 us).
        return orjson.dumps(event).decode()
    except TypeError:
        return dumps(event)


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger; lines carry the service, request and trace fields automatically."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger


def _configure_until_start() -> None:
    """What ``svc.log`` does before the service starts (lines logged while its module is
    imported): the same redacted lines, through :data:`WRITER`, with the secrets the
    runtime contract names (``CORRAL_SECRET_VARIABLES``, tokens, URL passwords); the
    settings' own secrets join at start. Without this, structlog's default would print
    them as given. Left alone when the process configured structlog itself."""
    global _import_processors
    if structlog.is_configured():
        return
    from corral.sdk._settings import environment_secrets

    register_secrets(environment_secrets(os.environ))
    for key, variable in (("service", contract.SERVICE), ("instance", contract.INSTANCE)):
        if os.environ.get(variable):
            _static[key] = os.environ[variable]
    # Not cached: loggers made now must pick up the configuration of the start.
    _configure_structlog(
        console=os.environ.get(contract.LOG_FORMAT) == "console",
        level=logging.INFO,
        cache=False,
    )
    _import_processors = structlog.get_config()["processors"]


_import_processors: object = None
"""The processors :func:`_configure_until_start` configured: while they are structlog's,
nobody else configured it since."""


def refresh_until_start() -> None:
    """:func:`_configure_until_start` again, from the environment as it is now: for a
    process forked after this module was imported (Corral's fork server imports the SDK
    once and gives each forked instance its own environment), so the lines logged while
    the service's module is imported carry its names and redact its secrets. Nothing
    when the process configured structlog itself."""
    if structlog.is_configured() and structlog.get_config()["processors"] is not _import_processors:
        return
    for key in ("service", "instance"):
        _static.pop(key, None)
    structlog.reset_defaults()
    _configure_until_start()


_configure_until_start()
