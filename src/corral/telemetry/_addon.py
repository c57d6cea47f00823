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
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from corral import contract
from corral.plan import Plan, ServicePlan
from corral.runtime.addon import Addon, RuntimeContext
from corral.runtime.registry import Registry
from corral.telemetry._file_sd import TargetFile, prometheus_targets
from corral.telemetry._graph import system_graph
from corral.telemetry._otlp import decode_spans, export_response, redacted
from corral.telemetry._scraper import ENVOY_STATS_QUERY, Scraper, ScrapeTarget
from corral.telemetry._traces import TraceStore
from corral.telemetry._window import MetricsWindow, summarize

__all__ = ["GATEWAY_SERVICE", "TRACES_HEADERS", "TelemetryAddon"]

GATEWAY_SERVICE = f"{contract.COMPONENT_PREFIX}gateway"
TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""Read by the OTLP exporter itself: how instances authenticate to the receiver."""
_USER_ENDPOINTS = (contract.OTEL_ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


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
        self._environ = os.environ if environ is None else environ
        self._plan: Plan | None = None
        self._registry: Registry | None = None
        self._scraper: Scraper | None = None
        self._targets: TargetFile | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, ctx: RuntimeContext) -> None:
        self._plan = ctx.plan
        self._registry = ctx.registry
        self._scraper = Scraper(self.window, self.scrape_targets, interval=self.interval)
        self._targets = TargetFile(ctx.state_dir / "prometheus")
        self._targets.write_config(interval=self.interval)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._scraper.run(), name="corral-telemetry-scrape"),
            loop.create_task(self._follow_targets(ctx.registry), name="corral-telemetry-sd"),
        ]

    def environment(self, service: ServicePlan) -> dict[str, str]:
        if self.otlp_endpoint is None:
            return {}
        if any(name in service.env or name in self._environ for name in _USER_ENDPOINTS):
            return {}  # the user's collector gets the spans, and never our token
        return {
            contract.OTEL_ENDPOINT: self.otlp_endpoint,
            TRACES_HEADERS: "authorization=" + quote(f"Bearer {self.ingest_token}"),
        }

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._scraper is not None:
            await self._scraper.close()

    def status(self) -> dict[str, Any]:
        if self._scraper is None or self._targets is None:
            return {}
        return {
            "telemetry": {
                "scrape_interval": self.interval,
                "scrape_rounds": self._scraper.rounds,
                "scrape_failures": self._scraper.failures,
                "traces": len(self.traces),
                "spans_received": self.traces.received,
                "otlp_endpoint": self.otlp_endpoint,
                "prometheus_targets": str(self._targets.path),
                "prometheus_config": str(self._targets.config_path),
            }
        }

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

    async def event_bus(self) -> dict[str, Any] | None:
        return None if self._event_bus is None else await self._event_bus()

    def trace_list(self, *, limit: int, service: str | None) -> list[dict[str, Any]]:
        return self.traces.list(limit=limit, service=service)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        return self.traces.get(trace_id)

    def ingest(self, body: bytes, *, content_type: str | None, encoding: str | None) -> bytes:
        """One OTLP/HTTP export request; the protobuf answer. Raises OtlpError."""
        spans = decode_spans(body, content_type=content_type, encoding=encoding)
        redact = self.redact
        self.traces.add(spans if redact is None else [redacted(s, redact) for s in spans])
        return export_response()
