"""A bounded in-memory window of scraped metrics, and the summaries drawn from it.

Each scrape round hands :meth:`MetricsWindow.record` the parsed scrape of every
instance. The window keeps each instance's last counters (with its pid, so a restarted
process counts from zero again), turns the new ones into increments, sums them per
service and stores one :class:`Tick` per service and round, holding only the counters
that moved. Summaries and time series are sums of ticks over time, so any window or
step shorter than the kept one can be asked for; quantiles come from summed buckets.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.telemetry._quantiles import histogram_quantile
from corral.telemetry._samples import GATEWAY_ROUTE, Key, Scrape

__all__ = ["CIRCUIT_STATES", "InstanceScrape", "MetricsWindow", "Tick", "summarize"]

CIRCUIT_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass(frozen=True)
class InstanceScrape:
    service: str
    instance: str
    pid: int | None
    scrape: Scrape


@dataclass
class Tick:
    t: float
    deltas: dict[Key, float]


@dataclass
class _Last:
    pid: int | None
    counters: dict[Key, float]
    gauges: dict[Key, float]
    t: float


@dataclass
class _Service:
    ticks: deque[Tick] = field(default_factory=deque)


class MetricsWindow:
    """Increments per service over the last ``keep`` seconds. One event loop; not
    thread-safe (the scraper parses in a thread and records on the loop)."""

    def __init__(self, *, keep: float = 900.0) -> None:
        self.keep = keep
        self.started: float | None = None
        """When the first round was recorded: summaries never count time before it."""
        self._services: dict[str, _Service] = {}
        self._last: dict[str, _Last] = {}
        self.on_round: Callable[[float, dict[str, dict[Key, float]]], None] | None = None
        """Told each round's increments per service (the kept store's metric rollups)."""

    def services(self) -> list[str]:
        return sorted(self._services)

    def record(self, t: float, scrapes: Iterable[InstanceScrape]) -> None:
        """One scrape round at time ``t``. Instances missing from it keep their last
        counters (a failed scrape loses nothing: the next one carries the increments)."""
        if self.started is None:
            self.started = t
        sums: dict[str, dict[Key, float]] = {}
        for item in scrapes:
            last = self._last.get(item.instance)
            previous = last.counters if last is not None and last.pid == item.pid else {}
            deltas = sums.setdefault(item.service, {})
            self._services.setdefault(item.service, _Service())
            for key, value in item.scrape.counters.items():
                before = previous.get(key, 0.0)
                # A counter that went down was reset (a process restarted under the same
                # pid cannot happen; a component's counters can be reset): all of it is new.
                delta = value - before if value >= before else value
                if delta > 0:
                    deltas[key] = deltas.get(key, 0.0) + delta
            self._last[item.instance] = _Last(item.pid, item.scrape.counters, item.scrape.gauges, t)
        for service, deltas in sums.items():
            if deltas:
                self._services[service].ticks.append(Tick(t, deltas))
        if self.on_round is not None:
            self.on_round(t, {service: deltas for service, deltas in sums.items() if deltas})
        horizon = t - self.keep
        for entry in self._services.values():
            while entry.ticks and entry.ticks[0].t < horizon:
                entry.ticks.popleft()
        # A round that began before an instance left may have recorded it once more,
        # after retain() forgot it: nothing heard of for longer than the window goes.
        for instance in [i for i, last in self._last.items() if last.t < horizon]:
            del self._last[instance]

    def retain(self, instances: Collection[str]) -> None:
        """Forget every instance but these (the serving ones): those that stopped or left
        the registry. Their increments stay in the ticks."""
        for instance in [i for i in self._last if i not in instances]:
            del self._last[instance]

    def gauges(self, instances: Iterable[str]) -> list[dict[Key, float]]:
        return [self._last[i].gauges for i in instances if i in self._last]

    def totals(self, service: str, since: float, until: float) -> dict[Key, float]:
        """Increments of ``service`` recorded in ``(since, until]``."""
        out: dict[Key, float] = {}
        entry = self._services.get(service)
        if entry is None:
            return out
        for tick in entry.ticks:
            if since < tick.t <= until:
                for key, value in tick.deltas.items():
                    out[key] = out.get(key, 0.0) + value
        return out

    def covered(self, window: float, now: float) -> float:
        """How many of the last ``window`` seconds the window has seen (rates divide by it)."""
        if self.started is None:
            return 0.0
        return max(0.0, min(window, now - self.started))

    def series(self, service: str, *, now: float, window: float, step: float) -> dict[str, Any]:
        """Per-step RED of ``service`` and of each of its routes over the last ``window``.

        ``t`` holds each step's end (Unix seconds); values are per step: ``rate`` in
        requests per second, ``error_rate`` the 5xx fraction (None without requests),
        quantiles in seconds (None without requests)."""
        steps = max(1, min(math.ceil(window / step), 2000))
        start = now - steps * step
        buckets: list[dict[Key, float]] = [{} for _ in range(steps)]
        entry = self._services.get(service)
        for tick in entry.ticks if entry is not None else ():
            if tick.t <= start or tick.t > now:
                continue
            index = min(int((tick.t - start) // step), steps - 1)
            into = buckets[index]
            for key, value in tick.deltas.items():
                into[key] = into.get(key, 0.0) + value
        times = [round(start + (i + 1) * step, 3) for i in range(steps)]
        gateway = any(k[0] == "http" and k[2] == GATEWAY_ROUTE for b in buckets for k in b)
        stats = [
            _red(b, step, method="", route=GATEWAY_ROUTE) if gateway else _red(b, step)
            for b in buckets
        ]
        routes: dict[str, dict[str, list[Any]]] = {}
        for method, route in sorted({r for b in buckets for r in _routes(b)}):
            per = [_red(b, step, method=method, route=route) for b in buckets]
            routes[f"{method} {route}".strip()] = _columns(per)
        return {"service": service, "step": step, "t": times, **_columns(stats), "routes": routes}


def _columns(stats: list[dict[str, Any]]) -> dict[str, list[Any]]:
    names = ("rate", "error_rate", "p50", "p95", "p99")
    return {name: [s[name] for s in stats] for name in names}


def _routes(totals: Mapping[Key, float]) -> set[tuple[str, str]]:
    """(method, route) pairs that answered requests; the gateway's have method ""."""
    return {(key[1], key[2]) for key in totals if key[0] == "http"}


def _overall(totals: Mapping[Key, float], seconds: float) -> dict[str, Any]:
    """RED over every route; the gateway's is its own downstream total (route ``*``),
    since its per-cluster counts are the same requests again."""
    if any(key[0] == "http" and key[2] == GATEWAY_ROUTE for key in totals):
        return _red(totals, seconds, method="", route=GATEWAY_ROUTE)
    return _red(totals, seconds)


def _red(
    totals: Mapping[Key, float],
    seconds: float,
    *,
    method: str | None = None,
    route: str | None = None,
) -> dict[str, Any]:
    """Requests, errors, rates and latency quantiles from summed increments, for all
    routes or one (``method`` "" is the gateway's, which has none)."""

    def wanted(key: Key) -> bool:
        return route is None or (key[1] == method and key[2] == route)

    statuses: dict[str, float] = {}
    cumulative: dict[float, float] = {}
    latency = 0.0
    for key, value in totals.items():
        kind = key[0]
        if kind == "http" and wanted(key):
            statuses[key[3]] = statuses.get(key[3], 0.0) + value
        elif kind == "bucket" and wanted(key):
            bound = float(key[3])
            cumulative[bound] = cumulative.get(bound, 0.0) + value
        elif kind == "latency_sum" and wanted(key):
            latency += value
    requests = sum(statuses.values())
    errors = sum(v for s, v in statuses.items() if s.startswith("5"))
    bounds = sorted(cumulative)
    counts = [cumulative[b] for b in bounds]
    if bounds and not math.isinf(bounds[-1]):
        bounds.append(math.inf)
        counts.append(0.0)

    def quantile(q: float) -> float | None:
        if not bounds:
            return None
        value = histogram_quantile(q, bounds, counts)
        return None if value is None else round(value, 6)

    return {
        "requests": round(requests),
        "errors": round(errors),
        "rate": round(requests / seconds, 3) if seconds > 0 else 0.0,
        "error_rate": round(errors / requests, 4) if requests else None,
        "mean": round(latency / requests, 6) if requests else None,
        "p50": quantile(0.5),
        "p95": quantile(0.95),
        "p99": quantile(0.99),
        "statuses": {s: round(v) for s, v in sorted(statuses.items())},
    }


def _clients(totals: Mapping[Key, float], gauges: list[dict[Key, float]]) -> list[dict[str, Any]]:
    targets: dict[str, dict[str, Any]] = {}

    def entry(target: str) -> dict[str, Any]:
        return targets.setdefault(
            target,
            {
                "target": target,
                "calls": 0,
                "failed": 0,
                "retries": 0,
                "budget_exhausted": 0,
                "circuit_changes": 0,
                "bulkhead_rejections": 0,
                "fallbacks": 0,
                "circuits": {},
            },
        )

    for key, value in totals.items():
        kind = key[0]
        if kind == "calls":
            row = entry(key[1])
            row["calls"] += round(value)
            if key[2] != "ok":
                row["failed"] += round(value)
        elif kind in ("retries", "budget_exhausted", "bulkhead_rejections", "fallbacks"):
            entry(key[1])[kind] += round(value)
        elif kind == "circuit_changes":
            entry(key[1])["circuit_changes"] += round(value)
    for found in gauges:
        for key, value in found.items():
            if key[0] == "circuit_state":
                state = CIRCUIT_STATES.get(int(value), "unknown")
                circuits = entry(key[1])["circuits"]
                circuits[state] = circuits.get(state, 0) + 1
    return [targets[name] for name in sorted(targets)]


def summarize(
    window: MetricsWindow,
    service: str,
    instances: list[str],
    *,
    now: float,
    seconds: float,
) -> dict[str, Any]:
    """RED of ``service`` over the last ``seconds`` (for all routes and per route), its
    CPU and in-flight requests, and what its clients saw (retries, circuits, bulkheads).
    ``instances`` are the ones serving now, whose gauges count."""
    covered = window.covered(seconds, now)
    totals = window.totals(service, now - seconds, now)
    gauges = window.gauges(instances)
    summary = _overall(totals, covered)
    routes = []
    for method, route in sorted(_routes(totals)):
        stats = _red(totals, covered, method=method, route=route)
        routes.append({"method": method, "route": route, **stats})
    return {
        "service": service,
        "window": round(covered, 3),
        **summary,
        "cpu": round(totals.get(("cpu",), 0.0) / covered, 4) if covered else 0.0,
        "in_flight": round(sum(g.get(("in_flight",), 0.0) for g in gauges)),
        "rss": round(sum(g.get(("rss",), 0.0) for g in gauges)),
        "rate_limited": round(totals.get(("rate_limited",), 0.0)),
        "routes": routes,
        "clients": _clients(totals, gauges),
    }
