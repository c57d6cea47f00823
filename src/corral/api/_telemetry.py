"""The API's telemetry endpoints: RED summaries and series, the system graph, the event
bus, traces (list and one), and the OTLP/HTTP receiver instances export spans to.

Everything is read from a :class:`TelemetrySource` (corral.telemetry's addon, wired by
corral.control), so this module knows the shapes but none of the collecting. Reads need
the admin token; the receiver takes only the ingest token the instances were given.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.params import Depends as DependsParam

from corral.api._gate import Access, Rule
from corral.api._problems import ApiProblem
from corral.api._version import API_VERSION, OTLP_BASE

__all__ = ["OTLP_PATH", "TELEMETRY_RULES", "TelemetrySource", "telemetry_router"]

OTLP_PATH = f"{OTLP_BASE}/v1/traces"
"""Where spans are received."""

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
LEVEL_NAMES = ("debug", "info", "warning", "error", "critical")
"""Levels a log search accepts (the SDK's structlog levels)."""
_MAX_EXPORT = 16 * 1024 * 1024
"""Bytes an export request may send (the exporter sends batches of 512 spans)."""

TELEMETRY_RULES = {OTLP_PATH: Rule(Access.INGEST, _MAX_EXPORT)}
"""The gate's rules: the receiver takes the ingest token, and no other endpoint does."""


class TelemetrySource(Protocol):
    ingest_token: str

    def knows(self, service: str) -> bool: ...

    def summary(self, *, window: float) -> dict[str, Any]: ...

    def series(self, service: str, *, window: float, step: float) -> dict[str, Any]: ...

    def history(self, service: str, *, window: float, step: float) -> dict[str, Any] | None:
        """From the kept store (None: none). May block: called from a worker thread."""
        ...

    def graph(self) -> dict[str, Any]: ...

    async def event_bus(self) -> dict[str, Any] | None: ...

    def event_history(self, *, window: float) -> dict[str, Any] | None:
        """Topic rates and consumer lag over time; None without an event bus."""
        ...

    async def dead_letter(self, action: str, seq: int | None = None) -> Any:
        """show (None: unknown), replay (sequences), purge (count); LookupError: no bus."""
        ...

    def search_traces(
        self,
        *,
        service: str | None,
        route: str | None,
        errors_only: bool,
        min_duration_ms: float | None,
        since: float | None,
        before: float | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """May block (the kept store): called from a worker thread."""
        ...

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """May block (the kept store): called from a worker thread."""
        ...

    def search_logs(
        self,
        *,
        services: tuple[str, ...],
        instance: str | None,
        level: str | None,
        text: str | None,
        trace_id: str | None,
        since: float | None,
        before_id: int | None,
        limit: int,
    ) -> list[dict[str, Any]] | None:
        """None when nothing is kept. May block: called from a worker thread."""
        ...

    def ingest(self, body: bytes, *, content_type: str | None, encoding: str | None) -> bytes:
        """Raises ValueError with ``status`` and ``detail`` for a body it cannot read."""
        ...


Window = Annotated[float, Query(gt=0, le=900, description="Seconds back from now.")]


def telemetry_router(source: TelemetrySource, *, admin: DependsParam) -> APIRouter:
    """The endpoints, reading ``source``; ``admin`` is the API's admin-token dependency."""
    router = APIRouter()
    v = f"/{API_VERSION}"

    def known(service: str) -> str:
        if not source.knows(service):
            raise ApiProblem(
                404, "unknown service", f"no corral.sdk service or gateway named {service!r}"
            )
        return service

    @router.get(f"{v}/telemetry/summary", dependencies=[admin], tags=["telemetry"])
    async def summary(window: Window = 60.0) -> dict[str, Any]:
        """RED per service and route over the window (rate, 5xx rate, p50/p95/p99), CPU,
        in-flight requests, what each service's clients saw (retries, circuits,
        bulkhead rejections) and the gateway's own numbers."""
        return source.summary(window=window)

    @router.get(
        f"{v}/telemetry/services/{{service}}/series", dependencies=[admin], tags=["telemetry"]
    )
    async def series(
        service: str,
        window: Window = 300.0,
        step: Annotated[float, Query(ge=1, le=300, description="Seconds per point.")] = 5.0,
    ) -> dict[str, Any]:
        """Per-step RED of one service and of each route, for charts."""
        if window / step > 2000:
            raise ApiProblem(422, "too many points", "window/step may be 2000 at most")
        return source.series(known(service), window=window, step=step)

    @router.get(
        f"{v}/telemetry/services/{{service}}/history", dependencies=[admin], tags=["telemetry"]
    )
    def history(
        service: str,
        window: Annotated[
            float, Query(gt=0, le=7 * 86400, description="Seconds back from now.")
        ] = 3600.0,
        step: Annotated[float, Query(ge=10, le=86400, description="Seconds per point.")] = 60.0,
    ) -> dict[str, Any]:
        """Per-step RED of one service from the kept store's rollups (10 s buckets for
        the last hour, 5 min beyond): earlier runs of the system included, a step with
        nothing stored (the system was down) null. Plain function: read in a thread."""
        if window / step > 2000:
            raise ApiProblem(422, "too many points", "window/step may be 2000 at most")
        found = source.history(known(service), window=window, step=step)
        if found is None:
            raise ApiProblem(503, "no metric history", "this system keeps no telemetry store")
        return found

    @router.get(f"{v}/telemetry/graph", dependencies=[admin], tags=["telemetry"])
    async def graph() -> dict[str, Any]:
        """Gateway, services and topics, with routes, dependencies, observed calls and
        publish/subscribe edges."""
        return source.graph()

    @router.get(f"{v}/telemetry/events", dependencies=[admin], tags=["telemetry"])
    async def events() -> dict[str, Any]:
        """Streams, consumer lag and dead letters of the event bus."""
        try:
            found = await source.event_bus()
        except Exception as exc:  # the bus being down is a state to show, not a 500
            raise ApiProblem(503, "the event bus did not answer", str(exc) or repr(exc)) from None
        if found is None:
            raise ApiProblem(404, "no event bus", "this system has no `events:` section")
        return found

    @router.get(f"{v}/telemetry/events/history", dependencies=[admin], tags=["telemetry"])
    async def events_history(
        window: Annotated[float, Query(gt=0, le=3600, description="Seconds back.")] = 3600.0,
    ) -> dict[str, Any]:
        """Each topic's publish rate and each consumer's lag, sampled every 10 s over the
        last hour (kept in memory since this `corral up`)."""
        found = source.event_history(window=window)
        if found is None:
            raise ApiProblem(404, "no event bus", "this system has no `events:` section")
        return found

    async def letters(action: str, seq: int | None = None) -> Any:
        try:
            return await source.dead_letter(action, seq)
        except LookupError as exc:
            raise ApiProblem(404, "no event bus", str(exc)) from None
        except Exception as exc:  # the bus being down is a state to show, not a 500
            raise ApiProblem(503, "the event bus did not answer", str(exc) or repr(exc)) from None

    dlq = f"{v}/telemetry/events/dead-letters"

    @router.get(f"{dlq}/{{seq}}", dependencies=[admin], tags=["telemetry"])
    async def dead_letter(seq: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
        """One dead letter whole: the event, the error, its deliveries, its headers."""
        found = await letters("show", seq)
        if found is None:
            raise ApiProblem(404, "unknown dead letter", f"no dead letter {seq}")
        return dict(found)

    @router.post(f"{dlq}/{{seq}}/replay", dependencies=[admin], tags=["telemetry"])
    async def replay_one(seq: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
        """Send one dead letter back to the service that failed it."""
        replayed = await letters("replay", seq)
        if not replayed:
            raise ApiProblem(404, "unknown dead letter", f"no dead letter {seq} to replay")
        return {"replayed": replayed}

    @router.post(f"{dlq}/replay", dependencies=[admin], tags=["telemetry"])
    async def replay_all() -> dict[str, Any]:
        """Send every dead letter back."""
        return {"replayed": await letters("replay")}

    @router.delete(dlq, dependencies=[admin], tags=["telemetry"])
    async def purge() -> dict[str, Any]:
        """Delete every dead letter."""
        return {"purged": await letters("purge")}

    # Plain functions: FastAPI runs them in its thread pool, so the store's reads never
    # hold the event loop that supervises the system.
    @router.get(f"{v}/traces", dependencies=[admin], tags=["traces"])
    def traces(
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        service: str | None = None,
        route: Annotated[str | None, Query(description="The root span's route.")] = None,
        status: Annotated[Literal["error"] | None, Query(description="Only with errors.")] = None,
        min_duration: Annotated[float | None, Query(ge=0, description="Milliseconds.")] = None,
        since: Annotated[float | None, Query(description="Unix time.")] = None,
        before: Annotated[float | None, Query(description="Unix time (paging back).")] = None,
    ) -> list[dict[str, Any]]:
        """The most recently started traces first, filtered: those touching
        ``service``, whose root serves ``route``, with an error, lasting at least
        ``min_duration`` ms, started in ``[since, before)``."""
        return source.search_traces(
            service=service,
            route=route,
            errors_only=status == "error",
            min_duration_ms=min_duration,
            since=since,
            before=before,
            limit=limit,
        )

    @router.get(f"{v}/telemetry/logs", dependencies=[admin], tags=["logs"])
    def logs(
        service: Annotated[list[str] | None, Query()] = None,
        instance: str | None = None,
        level: Annotated[
            str | None, Query(description="This level and worse: debug, info, warning, error.")
        ] = None,
        q: Annotated[str | None, Query(max_length=500, description="Text in the line.")] = None,
        trace: str | None = None,
        since: Annotated[float | None, Query(description="Unix time.")] = None,
        before: Annotated[int | None, Query(description="A line id (paging back).")] = None,
        limit: Annotated[int, Query(ge=1, le=2000)] = 200,
    ) -> list[dict[str, Any]]:
        """Captured log lines from the kept store, newest first: of these services or
        instance, at ``level`` or worse, containing ``q``, carrying trace id ``trace``."""
        if level is not None and level.lower() not in LEVEL_NAMES:
            raise ApiProblem(
                422, "unknown level", f"{level!r} is not one of {', '.join(LEVEL_NAMES)}"
            )
        if trace is not None and not _TRACE_ID.match(trace):
            raise ApiProblem(422, "invalid trace id", "a trace id is 32 hexadecimal digits")
        found = source.search_logs(
            services=tuple(service or ()),
            instance=instance,
            level=None if level is None else level.lower(),
            text=q,
            trace_id=trace,
            since=since,
            before_id=before,
            limit=limit,
        )
        if found is None:
            raise ApiProblem(503, "no log index", "this system keeps no telemetry store")
        return found

    @router.get(f"{v}/traces/{{trace_id}}", dependencies=[admin], tags=["traces"])
    def trace(trace_id: str) -> dict[str, Any]:
        """One trace, every span of every service, in start order."""
        if not _TRACE_ID.match(trace_id):
            raise ApiProblem(422, "invalid trace id", "a trace id is 32 hexadecimal digits")
        found = source.trace(trace_id)
        if found is None:
            raise ApiProblem(
                404, "unknown trace", f"no trace {trace_id} (only the most recent are kept)"
            )
        return found

    @router.post(OTLP_PATH, tags=["traces"], include_in_schema=False)
    async def receive(request: Request) -> Response:
        """OTLP/HTTP: an ExportTraceServiceRequest in protobuf, from an instance. The
        gate has checked the ingest token and read the body, at most ``_MAX_EXPORT``."""
        body = await request.body()
        try:
            answer = source.ingest(
                body,
                content_type=request.headers.get("content-type"),
                encoding=request.headers.get("content-encoding"),
            )
        except ValueError as exc:
            status = int(getattr(exc, "status", 400))
            raise ApiProblem(status, "cannot read the spans", str(exc)) from None
        return Response(answer, media_type="application/x-protobuf")

    return router
