"""How the manifest's numbers and policies map onto what each platform can express. Pure.

What cannot be expressed, and what is done instead:

- **Durations.** Kubernetes probes count whole seconds (at least 1): a period of 50 ms
  becomes 1 s, 1.5 s becomes 2 s (always rounded up, so a check is never stricter than
  the manifest says). Compose takes Go durations and keeps fractions (``0.5s``).
- **Docker/Compose health checks** run a process in the container per check (here a
  small Python, about 50 ms of CPU), so the interval is the check's period but at least
  5 s; the period itself is kept as ``start_interval``, the rate while the container
  starts (Docker 25 or later). ``start_period`` gives a container 30 s (or the startup
  check's whole window, if longer) before failures count. Compose has one health check
  per service: the readiness check. Liveness is not expressed (Docker does not restart an
  unhealthy container; Kubernetes does, from the liveness probe).
- **Restart policy.** Compose: ``always`` is ``unless-stopped`` (a container someone
  stopped stays stopped), ``on-failure`` is ``on-failure``, ``never`` is ``no``. A
  Kubernetes Deployment restarts its pods always, whatever the manifest says (a note is
  printed for ``on-failure`` and ``never``). Backoff (initial, max, multiplier,
  reset_after) is the platform's own on both: Docker doubles from 100 ms, Kubernetes'
  CrashLoopBackOff from 10 s up to 5 minutes.
- **Resources.** CPU becomes a request (Kubernetes) or reservation (Compose) and no
  limit: a CPU limit throttles a latency-sensitive service even on an idle node. Memory
  becomes request and limit alike: memory cannot be taken back from a process, so a
  request below the limit only moves the out-of-memory kill to a worse moment.
"""

from __future__ import annotations

import math
from typing import Any

from corral.manifest import RestartPolicy
from corral.plan import CheckKind, CheckPlan

MIN_HEALTHCHECK_INTERVAL = 5.0
DEFAULT_START_PERIOD = 30.0

_HTTP_PROBE = (
    "import os, sys, urllib.request; "
    "urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + sys.argv[1], "
    "timeout=float(sys.argv[2]))"
)
_TCP_PROBE = (
    "import os, socket, sys; "
    "socket.create_connection(('127.0.0.1', int(os.environ.get('PORT', '8000'))), "
    "timeout=float(sys.argv[1])).close()"
)
"""Checks run inside a service image without curl or wget: its Python is there anyway.
urlopen raises on a non-2xx answer (a draining instance's 503), so the exit code is 1."""


def whole_seconds(seconds: float, *, minimum: int = 1) -> int:
    """Kubernetes' integer seconds, rounded up: 0.05 -> 1, 1.5 -> 2, 30 -> 30."""
    return max(minimum, math.ceil(round(seconds, 6)))


def go_duration(seconds: float) -> str:
    """Compose's duration text: 0.5 -> ``0.5s``, 10 -> ``10s``, 90 -> ``90s``."""
    return f"{round(seconds, 6):g}s"


def cpu_quantity(cores: float) -> str:
    """Kubernetes CPU: 0.5 -> ``500m``, 2 -> ``2``, 0.0001 -> ``1m`` (rounded up)."""
    millis = max(1, math.ceil(round(cores * 1000, 6)))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


_BINARY = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


def memory_quantity(size: int) -> str:
    """Kubernetes memory, exact: 268435456 -> ``256Mi``, 10**9 -> ``1G``, 1000 -> ``1k``."""
    for suffix, factor in (*_BINARY, *_DECIMAL):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


COMPOSE_RESTART = {
    RestartPolicy.ALWAYS: "unless-stopped",
    RestartPolicy.ON_FAILURE: "on-failure",
    RestartPolicy.NEVER: "no",
}


def probe_command(check: CheckPlan, *, python: str = "python") -> list[str]:
    """The argv that runs ``check`` inside the service's container."""
    if check.kind is CheckKind.HTTP:
        assert check.path is not None
        return [python, "-c", _HTTP_PROBE, check.path, f"{check.timeout:g}"]
    if check.kind is CheckKind.TCP:
        return [python, "-c", _TCP_PROBE, f"{check.timeout:g}"]
    return list(check.argv)


def start_period(startup: CheckPlan | None) -> float:
    if startup is None:
        return DEFAULT_START_PERIOD
    window = startup.initial_delay + startup.period * startup.failure_threshold
    return max(DEFAULT_START_PERIOD, window)


def healthcheck(
    check: CheckPlan, startup: CheckPlan | None = None, *, python: str = "python"
) -> dict[str, Any]:
    """A Compose ``healthcheck`` (the same numbers go into the Dockerfile's HEALTHCHECK)."""
    interval = max(check.period, MIN_HEALTHCHECK_INTERVAL)
    out: dict[str, Any] = {
        "test": ["CMD", *probe_command(check, python=python)],
        "interval": go_duration(interval),
        "timeout": go_duration(check.timeout),
        "retries": check.failure_threshold,
        "start_period": go_duration(check.initial_delay + start_period(startup)),
    }
    if check.period < interval:
        out["start_interval"] = go_duration(check.period)
    return out


def kubernetes_probe(check: CheckPlan, *, port: str = "http") -> dict[str, Any]:
    """A container probe with the check's own period, timeout and threshold."""
    action: dict[str, Any]
    if check.kind is CheckKind.HTTP:
        action = {"httpGet": {"path": check.path, "port": port}}
    elif check.kind is CheckKind.TCP:
        action = {"tcpSocket": {"port": port}}
    else:
        action = {"exec": {"command": list(check.argv)}}
    out: dict[str, Any] = dict(action)
    if check.initial_delay:
        out["initialDelaySeconds"] = whole_seconds(check.initial_delay)
    out["periodSeconds"] = whole_seconds(check.period)
    out["timeoutSeconds"] = whole_seconds(check.timeout)
    out["failureThreshold"] = check.failure_threshold
    out["successThreshold"] = 1
    return out
