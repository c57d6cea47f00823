"""A probe's verdict from what was observed (pure: the runner does the observing).

Each function takes a probe and the control plane's answer it reads (the status, the
telemetry summary, the event bus overview) and says whether the tolerance held, with the
value seen, so a report shows *how far* from steady a system was, not only that it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.chaos._model import Probe
from corral.chaos._report import ProbeResult
from corral.runtime.status import SystemStatus

GATEWAY = "gateway"


def _result(probe: Probe, held: bool, value: Any, detail: str, at: float) -> ProbeResult:
    return ProbeResult(
        probe=probe.label, type=probe.type, held=held, value=value, detail=detail, at=at
    )


def ready(probe: Probe, status: SystemStatus, at: float) -> ProbeResult:
    """Every wanted service has all its replicas serving (components excluded)."""
    wanted = set(probe.services) if probe.services else None
    short = []
    for name, service in sorted(status.services.items()):
        if service.component or (wanted is not None and name not in wanted):
            continue
        if service.ready < service.replicas:
            short.append(f"{name} {service.ready}/{service.replicas}")
    missing = sorted((wanted or set()) - set(status.services))
    if missing:
        short += [f"{name}: no such service" for name in missing]
    detail = "short: " + ", ".join(short) if short else "all ready"
    return _result(probe, not short, len(short), detail, at)


def _red(probe: Probe, summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The RED numbers the probe reads: the gateway's or a service's, all routes or one."""
    if probe.target == GATEWAY:
        red = summary.get("gateway")
    else:
        red = next((s for s in summary.get("services", []) if s["service"] == probe.target), None)
    if red is None or probe.route is None:
        return red
    for route in red.get("routes", []):
        if f"{route['method']} {route['route']}".strip() == probe.route.strip():
            return dict(route)
    return {"requests": 0}


def error_rate(probe: Probe, summary: Mapping[str, Any], at: float) -> ProbeResult:
    """The 5xx share over the window; no requests at all holds (nothing failed)."""
    assert probe.max is not None
    red = _red(probe, summary)
    if red is None:
        return _result(probe, False, None, f"no metrics for {probe.target}", at)
    rate = red.get("error_rate")
    requests = red.get("requests", 0)
    if rate is None:
        return _result(probe, True, 0.0, f"no requests in the last {probe.window:g}s", at)
    detail = f"{red.get('errors', 0)} of {requests} requests failed (5xx)"
    return _result(probe, rate <= probe.max, rate, detail, at)


def latency(probe: Probe, summary: Mapping[str, Any], at: float) -> ProbeResult:
    """A latency quantile over the window, in seconds."""
    assert probe.max is not None
    red = _red(probe, summary)
    if red is None:
        return _result(probe, False, None, f"no metrics for {probe.target}", at)
    value = red.get(probe.quantile)
    if value is None:
        return _result(probe, True, None, f"no requests in the last {probe.window:g}s", at)
    detail = f"{probe.quantile} {value * 1000:.1f}ms over {red.get('requests', 0)} requests"
    return _result(probe, value <= probe.max, value, detail, at)


def dead_letters(probe: Probe, bus: Mapping[str, Any] | None, at: float) -> ProbeResult:
    assert probe.max is not None
    if bus is None:
        return _result(probe, False, None, "the event bus did not answer", at)
    count = int(bus.get("dead_letters", 0))
    return _result(probe, count <= probe.max, count, f"{count} dead letter(s)", at)


def http(probe: Probe, status: int | None, body: str, error: str | None, at: float) -> ProbeResult:
    wanted = probe.status if isinstance(probe.status, list) else [probe.status]
    if status is None:
        return _result(probe, False, None, error or "no answer", at)
    held = status in wanted
    detail = f"HTTP {status}"
    if held and probe.body_contains is not None and probe.body_contains not in body:
        held = False
        detail += f", the body lacks {probe.body_contains!r}"
    return _result(probe, held, status, detail, at)


def command(probe: Probe, code: int | None, output: str, at: float) -> ProbeResult:
    if code is None:
        return _result(probe, False, None, output or "timed out", at)
    tail = output.strip().splitlines()[-3:]
    detail = f"exit {code}" + (": " + " | ".join(tail) if tail and code != probe.exit else "")
    return _result(probe, code == probe.exit, code, detail[:500], at)
