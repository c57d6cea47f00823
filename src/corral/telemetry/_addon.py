"""``TelemetryAddon``: metrics, traces and Prometheus targets of the local system.

Lifecycle (see corral.runtime.addon): ``start`` begins scraping (every serving instance
of a corral.sdk service, and the gateway's Envoy when there is one) into a bounded
window and keeps the Prometheus target file in step with the registry; ``environment``
points each service's OpenTelemetry exporter at the control plane's receiver, unless the
user pointed it elsewhere; ``stop`` ends both tasks. Everything it holds is in memory
and read through the methods below, which the control-plane API serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from corral import contract
from corral.plan import Plan, ServicePlan
from corral.runtime.addon import Addon, RuntimeContext
from corral.runtime.registry import Registry
from corral.telemetry._envoy_spans import readable_gateway_span
from corral.telemetry._file_sd import TargetFile, prometheus_targets
from corral.telemetry._graph import system_graph
from corral.telemetry._otlp import decode_spans, export_response, redacted
from corral.telemetry._scraper import ENVOY_STATS_QUERY, Scraper, ScrapeTarget
from corral.telemetry._store import (
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    LEVELS,
    LogQuery,
    LogRecord,
    TelemetryStore,
    TraceQuery,
)
from corral.telemetry._traces import TraceStore
from corral.telemetry._window import MetricsWindow, summarize

__all__ = [
    "GATEWAY_SERVICE",
    "KEEP_VARIABLE",
    "MAX_SIZE_VARIABLE",
    "TRACES_HEADERS",
    "TelemetryAddon",
]

_LOG = logging.getLogger("corral.telemetry")

GATEWAY_SERVICE = f"{contract.COMPONENT_PREFIX}gateway"
TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""Read by the OTLP exporter itself: how instances authenticate to the receiver."""
_USER_ENDPOINTS = (contract.OTEL_ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
KEEP_VARIABLE = "CORRAL_TELEMETRY_KEEP"
"""How long the kept store holds telemetry: ``24h`` (the default), ``7d``, ``90m``."""
MAX_SIZE_VARIABLE = "CORRAL_TELEMETRY_MAX_SIZE"
"""How large the kept store may grow: ``512MB`` (the default), ``2GB``."""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BUS_EVERY = 10.0
"""Seconds between two samples of the event bus."""
_BUS_RETRY_EVERY = 0.25
"""Seconds between two tries while the bus is not there yet (the broker starting beside
this addon, or restarting)."""
_BUS_KEEP = 3600.0
"""Seconds of event-bus samples kept."""
ROUTINE_ACCESS_INDEXED_EVERY = 10
"""One in this many of the gateway's access lines for a 1xx-3xx answer goes into the kept
store's search index; every other gateway line (4xx, 5xx, resets, Envoy's own) goes in.
Indexing a line costs ~18 us of the orchestrator's CPU (JSON read, row, full-text entry),
12% of a proxied request's CPU in bench/gateway.py, against <= 5% asked (issue 18).
The instance's log file (``corral logs``) keeps every line; the gateway's spans and
metrics come from Envoy's tracer and stats, not from these lines."""
_ROUTINE_STATUS = re.compile(r'"status":\s*"?[123]\d\d\b')
_BYTES = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def retention(environ: Mapping[str, str], plan: Plan | None = None) -> tuple[float, int, list[str]]:
    """Seconds and bytes the store keeps: the manifest's ``telemetry:`` (in ``plan``),
    overridden by the environment, and what was wrong with the environment (a bad value
    falls back with a warning: telemetry never stops ``corral up``; the manifest's are
    checked, with their location, when it is loaded)."""
    problems = []
    keep, max_bytes = DEFAULT_KEEP, DEFAULT_MAX_BYTES
    if plan is not None:
        keep = plan.telemetry_keep or keep
        max_bytes = plan.telemetry_max_bytes or max_bytes
    raw = environ.get(KEEP_VARIABLE)
    if raw:
        match = _DURATION.match(raw)
        if match:
            keep = float(match.group(1)) * _SECONDS[match.group(2).lower()]
        else:
            problems.append(f"{KEEP_VARIABLE}={raw!r} is not a duration such as 24h or 7d")
    raw = environ.get(MAX_SIZE_VARIABLE)
    if raw:
        match = _SIZE.match(raw)
        if match:
            max_bytes = int(float(match.group(1)) * _BYTES[(match.group(2) or "b").lower()])
        else:
            problems.append(f"{MAX_SIZE_VARIABLE}={raw!r} is not a size such as 512MB or 2GB")
    return keep, max_bytes, problems


class TelemetryAddon(Addon):
    name = "telemetry"

    def __init__(
        self,
        *,
        interval: float = 2.0,
        keep: float = 900.0,
        max_traces: int = 500,
        gateway_metrics_url: Callable[[], str | None] = lambda: None,
        event_bus: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
        dead_letters: Callable[[str, int | None], Awaitable[Any]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``gateway_metrics_url``: asked each round (the gateway addon knows it once it
        runs); ``event_bus``: the bus overview (the broker's, wired by corral.control);
        ``environ``: where a user's own OTLP endpoint may come from."""
        self.window = MetricsWindow(keep=keep)
        self.traces = TraceStore(max_traces=max_traces)
        self.interval = interval
        self.ingest_token = secrets.token_urlsafe(32)
        """Bearer token instances send with their spans (and nothing else accepts)."""
        self.otlp_endpoint: str | None = None
        """Base URL of the receiver (``<api>/otlp``); set by the control plane."""
        self.redact: Callable[[str], str] | None = None
        """Secret values -> redacted, applied to every span received (the control plane
        sets it to the runtime's: the SDK redacts before export, this is the second line)."""
        self._gateway_metrics_url = gateway_metrics_url
        self._event_bus = event_bus
        self._dead_letters = dead_letters
        self._environ = os.environ if environ is None else environ
        self._plan: Plan | None = None
        self._registry: Registry | None = None
        self._scraper: Scraper | None = None
        self._targets: TargetFile | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lines: list[LogRecord] = []
        self._routine_access = 0
        self.bus_samples: deque[tuple[float, dict[str, int], dict[str, int]]] = deque(
            maxlen=int(_BUS_KEEP / _BUS_EVERY) + 1
        )
        """The event bus every ``_BUS_EVERY`` s: per topic its stream's message count, per
        ``topic/consumer`` its lag (pending), for the Events view's charts (in memory:
        the bus keeps no history of its own)."""
        self.store: TelemetryStore | None = None
        """The kept store (``<state_dir>/telemetry/telemetry.db``) once started; until
        then, and without a state directory, traces are held in memory only."""

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, ctx: RuntimeContext) -> None:
        self._plan = ctx.plan
        self._registry = ctx.registry
        self._scraper = Scraper(self.window, self.scrape_targets, interval=self.interval)
        self._targets = TargetFile(ctx.state_dir / "prometheus")
        self._targets.write_config(interval=self.interval)
        keep, max_bytes, problems = retention(self._environ, ctx.plan)
        for problem in problems:
            _LOG.warning("telemetry: %s", problem)
        # Opening checks the file (and may move a broken one aside): not on the loop.
        self.store = await asyncio.to_thread(
            TelemetryStore,
            ctx.state_dir / "telemetry" / "telemetry.db",
            keep=keep,
            max_bytes=max_bytes,
        )
        self.window.on_round = self.store.put_metrics
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._scraper.run(), name="corral-telemetry-scrape"),
            loop.create_task(self._follow_targets(ctx.registry), name="corral-telemetry-sd"),
        ]
        if self._event_bus is not None:
            self._tasks.append(loop.create_task(self._sample_bus(), name="corral-telemetry-bus"))

    def environment(self, service: ServicePlan) -> dict[str, str]:
        if self.otlp_endpoint is None:
            return {}
        if any(name in service.env or name in self._environ for name in _USER_ENDPOINTS):
            return {}  # the user's collector gets the spans, and never our token
        return {
            contract.OTEL_ENDPOINT: self.otlp_endpoint,
            TRACES_HEADERS: "authorization=" + quote(f"Bearer {self.ingest_token}"),
        }

    def receiver_for_gateway(self) -> tuple[str, str] | None:
        """The receiver's traces URL and the ``authorization`` header value, for Envoy's
        own tracer; None when the services' spans go to a user's collector (set in the
        shell that runs ``corral up``), or before the control plane set the endpoint."""
        if self.otlp_endpoint is None or any(n in self._environ for n in _USER_ENDPOINTS):
            return None
        return f"{self.otlp_endpoint}/v1/traces", f"Bearer {self.ingest_token}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._scraper is not None:
            await self._scraper.close()
        if self.store is not None:
            self.window.on_round = None
            self._hand_over_lines()
            await asyncio.to_thread(self.store.close)

    def status(self) -> dict[str, Any]:
        if self._scraper is None or self._targets is None:
            return {}
        return {
            "telemetry": {
                "scrape_interval": self.interval,
                "scrape_rounds": self._scraper.rounds,
                "scrape_failures": self._scraper.failures,
                **({} if self.store is not None else {"traces": len(self.traces)}),
                "spans_received": self.traces.received,
                **self._store_status(),
                "otlp_endpoint": self.otlp_endpoint,
                "prometheus_targets": str(self._targets.path),
                "prometheus_config": str(self._targets.config_path),
            }
        }

    def _store_status(self) -> dict[str, Any]:
        if self.store is None:
            return {}
        return {
            "store": str(self.store.path),
            "store_dropped_batches": self.store.dropped,
            "store_warnings": list(self.store.warnings),
        }

    def capture_log(self, line: Any) -> None:
        """A log tap (corral.runtime's ``LogStore.taps``): every captured line, already
        redacted, into the kept store's index (routine gateway access lines sampled: see
        ROUTINE_ACCESS_INDEXED_EVERY). Lines are gathered and handed over once
        per event-loop turn: one queue item per burst, not per line (a busy gateway
        logs a line per request)."""
        if self.store is None:
            return
        if line.service == GATEWAY_SERVICE and _ROUTINE_STATUS.search(line.line):
            self._routine_access += 1
            if self._routine_access % ROUTINE_ACCESS_INDEXED_EVERY != 1:
                return
        self._lines.append(LogRecord(line.t, line.service, line.instance, line.stream, line.line))
        if len(self._lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._hand_over_lines)
            except RuntimeError:  # no loop (a test calling directly): now
                self._hand_over_lines()

    def _hand_over_lines(self) -> None:
        lines, self._lines = self._lines, []
        if self.store is not None:
            self.store.put_logs(lines)

    # --- scraping ------------------------------------------------------------------

    def _sdk_services(self) -> set[str]:
        assert self._plan is not None
        return {name for name, s in self._plan.services.items() if s.app}

    def scrape_targets(self) -> list[ScrapeTarget]:
        """Every serving instance of a corral.sdk service, then the gateway."""
        assert self._registry is not None
        sdk = self._sdk_services()
        targets = [
            ScrapeTarget(r.service, r.instance, r.pid, r.url + contract.METRICS_PATH)
            for r in self._registry.snapshot().instances
            if r.serving and not r.component and r.service in sdk
        ]
        gateway = self._gateway_metrics_url()
        if gateway:
            url = f"{gateway}?{ENVOY_STATS_QUERY}"
            targets.append(ScrapeTarget(GATEWAY_SERVICE, GATEWAY_SERVICE, None, url, "envoy"))
        return targets

    async def _follow_targets(self, registry: Registry) -> None:
        assert self._plan is not None
        assert self._targets is not None
        sdk = self._sdk_services()
        async for snapshot in registry.watch():
            groups = prometheus_targets(
                self._plan.system,
                snapshot,
                sdk_services=sdk,
                gateway_metrics_url=self._gateway_metrics_url(),
            )
            self._targets.write(groups)
            serving = {r.instance for r in snapshot.instances if r.serving}
            self.window.retain(serving | {GATEWAY_SERVICE})

    # --- reading (the API) -----------------------------------------------------------

    def _serving(self, service: str) -> list[str]:
        assert self._registry is not None
        if service == GATEWAY_SERVICE:
            return [GATEWAY_SERVICE]
        return [r.instance for r in self._registry.snapshot().serving(service)]

    def summary(self, *, window: float, now: float | None = None) -> dict[str, Any]:
        """RED of every corral.sdk service (and the gateway) over the last ``window`` s."""
        now = time.time() if now is None else now
        names = sorted(self._sdk_services()) if self._plan is not None else []
        services = [
            summarize(self.window, name, self._serving(name), now=now, seconds=window)
            for name in names
        ]
        gateway = None
        if GATEWAY_SERVICE in self.window.services():
            gateway = summarize(
                self.window, GATEWAY_SERVICE, [GATEWAY_SERVICE], now=now, seconds=window
            )
        return {
            "window": window,
            "interval": self.interval,
            "now": now,
            "services": services,
            "gateway": gateway,
        }

    def knows(self, service: str) -> bool:
        return service == GATEWAY_SERVICE or service in self._sdk_services()

    def series(
        self, service: str, *, window: float, step: float, now: float | None = None
    ) -> dict[str, Any]:
        now = time.time() if now is None else now
        return self.window.series(service, now=now, window=window, step=step)

    def history(
        self, service: str, *, window: float, step: float, now: float | None = None
    ) -> dict[str, Any] | None:
        """Per-step RED of ``service`` over the last ``window`` seconds, from the kept
        store's rollups (so earlier runs of the system count); None without a store.
        Blocking: call from a worker thread."""
        if self.store is None:
            return None
        now = time.time() if now is None else now
        return self.store.history(service, since=now - window, until=now, step=step)

    def graph(self) -> dict[str, Any]:
        """The plan's graph plus the calls seen in the kept window."""
        assert self._plan is not None
        now = time.time()
        calls = set()
        for service in self.window.services():
            for key in self.window.totals(service, now - self.window.keep, now):
                if key[0] == "calls":
                    calls.add((service, key[1]))
        return system_graph(self._plan, observed_calls=calls)

    async def _sample_bus(self) -> None:
        """A periodic task (cancelled by ``stop``), not a wait for a condition.

        The addons start side by side, so the broker may not be up when this begins: no
        bus *yet* (the plan has an ``events`` section) is tried again shortly, rather
        than taken for a system without one. A plain loop, not a retry library: the
        condition is "not started yet", not an error, and ``stop`` cancels it."""
        while True:
            if await self.sample_bus():
                await asyncio.sleep(_BUS_EVERY)
            elif self._plan is not None and self._plan.events is not None:
                await asyncio.sleep(_BUS_RETRY_EVERY)
            else:
                return

    async def sample_bus(self, *, now: float | None = None) -> bool:
        """Keep one sample of the event bus; False when the system has none. A bus that
        does not answer (restarting, paused by chaos) leaves a gap."""
        try:
            found = await self.event_bus()
        except Exception as exc:  # a state to show as a gap, not a reason to stop
            _LOG.debug("telemetry: the event bus did not answer: %s", exc)
            return True
        if found is None:
            return False
        messages = {t["topic"]: int(t["messages"]) for t in found.get("topics", [])}
        lag = {
            f"{t['topic']}/{c['consumer']}": int(c["pending"])
            for t in found.get("topics", [])
            for c in t.get("consumers", [])
        }
        self.bus_samples.append((time.time() if now is None else now, messages, lag))
        return True

    def event_history(self, *, window: float, now: float | None = None) -> dict[str, Any] | None:
        """Per sample over the last ``window`` s: each topic's publish rate (messages per
        second since the sample before; null across a gap or a stream that shrank) and
        each consumer's lag. None when the system has no event bus."""
        if self._event_bus is None:
            return None
        now = time.time() if now is None else now
        samples = [s for s in self.bus_samples if s[0] > now - window]
        topics = sorted({name for _, messages, _ in samples for name in messages})
        consumers = sorted({name for _, _, lag in samples for name in lag})
        rates: dict[str, list[float | None]] = {name: [] for name in topics}
        before: tuple[float, dict[str, int], dict[str, int]] | None = None
        for sample in samples:
            t, messages, _ = sample
            for name in topics:
                rate = None
                if before is not None and t - before[0] <= 2.5 * _BUS_EVERY:
                    earlier, now_count = before[1].get(name), messages.get(name)
                    if earlier is not None and now_count is not None and now_count >= earlier:
                        rate = round((now_count - earlier) / (t - before[0]), 3)
                rates[name].append(rate)
            before = sample
        return {
            "step": _BUS_EVERY,
            "t": [round(s[0], 3) for s in samples],
            "topics": rates,
            "lag": {name: [s[2].get(name) for s in samples] for name in consumers},
        }

    async def event_bus(self) -> dict[str, Any] | None:
        return None if self._event_bus is None else await self._event_bus()

    async def dead_letter(self, action: str, seq: int | None = None) -> Any:
        """``show`` one (None: no such letter), ``replay`` one or all (the sequences sent
        back), ``purge`` all (how many). Raises LookupError without an event bus."""
        found = None if self._dead_letters is None else await self._dead_letters(action, seq)
        if found is None and action != "show":
            raise LookupError("this system has no event bus")
        return found

    def search_traces(
        self,
        *,
        service: str | None = None,
        route: str | None = None,
        errors_only: bool = False,
        min_duration_ms: float | None = None,
        since: float | None = None,
        before: float | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Blocking when the store is open: call from a worker thread."""
        if self.store is None:  # not started: what is in memory, by service only
            return self.traces.list(limit=limit, service=service)
        return self.store.traces(
            TraceQuery(
                service=service,
                route=route,
                errors_only=errors_only,
                min_duration_ms=min_duration_ms,
                since=since,
                before=before,
                limit=limit,
            )
        )

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """Blocking when the store is open: call from a worker thread."""
        if self.store is None:
            return self.traces.get(trace_id)
        return self.store.trace(trace_id)

    def search_logs(
        self,
        *,
        services: tuple[str, ...] = (),
        instance: str | None = None,
        level: str | None = None,
        text: str | None = None,
        trace_id: str | None = None,
        since: float | None = None,
        before_id: int | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]] | None:
        """None without a store. Blocking: call from a worker thread."""
        if self.store is None:
            return None
        return self.store.logs(
            LogQuery(
                services=services,
                instance=instance,
                min_level=None if level is None else LEVELS[level],
                text=text,
                trace_id=trace_id,
                since=since,
                before_id=before_id,
                limit=limit,
            )
        )

    def ingest(self, body: bytes, *, content_type: str | None, encoding: str | None) -> bytes:
        """One OTLP/HTTP export request; the protobuf answer. Raises OtlpError."""
        spans = decode_spans(body, content_type=content_type, encoding=encoding)
        spans = [readable_gateway_span(s) if s.service == GATEWAY_SERVICE else s for s in spans]
        redact = self.redact
        kept = spans if redact is None else [redacted(s, redact) for s in spans]
        if self.store is not None:
            self.store.put_spans(kept)  # written by the store's thread, not here
            self.traces.received += len(kept)
        else:
            self.traces.add(kept)
        return export_response()
