"""Scrapes every serving instance's ``/metrics`` (and Envoy's stats) on an interval.

Fetches run concurrently with a short timeout; parsing (prometheus_client's pure-Python
parser, a few milliseconds per instance) runs in a worker thread so the control plane's
event loop, which also supervises and serves the API, is never held for a whole round.
An instance that does not answer is skipped for the round: its counters carry over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp

from corral import contract
from corral.telemetry._samples import parse_envoy, parse_service
from corral.telemetry._window import InstanceScrape, MetricsWindow

__all__ = ["ENVOY_STATS_QUERY", "ScrapeTarget", "Scraper"]

_LOG = logging.getLogger("corral.telemetry")

ENVOY_STATS_QUERY = (
    r"usedonly&filter=^(http\.gateway\.downstream_rq_([0-9]xx|time|active)"
    r"|cluster\.[^.]+\.upstream_rq_([0-9]xx|time|retry)|.*rate_limited)$"
)
"""Only the stats the gateway summary reads: Envoy's whole page is ~1800 lines, ten
times the parse."""


@dataclass(frozen=True)
class ScrapeTarget:
    service: str
    instance: str
    pid: int | None
    url: str
    format: Literal["sdk", "envoy"] = "sdk"


def _parse(texts: Sequence[tuple[ScrapeTarget, str]]) -> list[InstanceScrape]:
    out = []
    for target, text in texts:
        try:
            if target.format == "envoy":
                scrape = parse_envoy(text, internal_prefix=contract.COMPONENT_PREFIX)
            else:
                scrape = parse_service(text)
        except ValueError as exc:  # not the exposition format: skip, say why once per round
            _LOG.warning("telemetry: cannot parse %s metrics: %s", target.instance, exc)
            continue
        out.append(InstanceScrape(target.service, target.instance, target.pid, scrape))
    return out


class Scraper:
    """``targets()`` is asked each round (it reads the registry), so instances that come
    and go are followed without a watch of their own."""

    def __init__(
        self,
        window: MetricsWindow,
        targets: Callable[[], list[ScrapeTarget]],
        *,
        interval: float = 2.0,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self.targets = targets
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.rounds = 0
        self.failures = 0
        """Fetches that failed (timeouts, refused, non-200), for status."""
        self._http: aiohttp.ClientSession | None = None

    async def _fetch(self, target: ScrapeTarget) -> tuple[ScrapeTarget, str] | None:
        assert self._http is not None
        try:
            async with self._http.get(target.url) as response:
                if response.status != 200:
                    self.failures += 1
                    return None
                return target, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            self.failures += 1
            return None

    async def scrape_once(self) -> int:
        """One round: fetch every target, parse, record. Returns how many answered."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        targets = self.targets()
        fetched = await asyncio.gather(*(self._fetch(t) for t in targets))
        texts = [item for item in fetched if item is not None]
        scrapes = await asyncio.to_thread(_parse, texts) if texts else []
        self.window.record(self.clock(), scrapes)
        self.rounds += 1
        return len(scrapes)

    async def run(self) -> None:
        """Scrape every ``interval`` seconds until cancelled (a round's own time counts)."""
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while True:
            try:
                await self.scrape_once()
            except Exception:  # a bug in one round must not end the scraping
                _LOG.exception("telemetry: scrape round failed")
            # A round slower than the interval delays the next one instead of bunching.
            next_round = max(next_round + self.interval, loop.time())
            await asyncio.sleep(next_round - loop.time())

    async def close(self) -> None:
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()
            self._http = None
