"""A small synchronous client of the control-plane API, for the CLI and scripts.

Answers come back as the API's own response models (:mod:`corral.runtime.status`,
:mod:`corral.runtime.registry`), parsed, so callers read attributes. Errors:
:class:`ApiError` when the API answers with a problem, and
:class:`corral.runtime.errors.NotRunningError` when no system answers at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from pydantic import TypeAdapter, ValidationError

from corral.api._files import RunFiles
from corral.api._version import API_VERSION
from corral.chaos import ChaosExperiment, ChaosOverview, ChaosStopped, Report
from corral.errors import CorralError
from corral.runtime.errors import NotRunningError
from corral.runtime.registry import InstanceRecord, Snapshot
from corral.runtime.status import ServiceChange, SystemStatus

_STATUS = TypeAdapter(SystemStatus)
_INSTANCES = TypeAdapter(list[InstanceRecord])
_SNAPSHOT = TypeAdapter(Snapshot)
_CHANGE = TypeAdapter(ServiceChange)
_RUNS = TypeAdapter(list[Report])
_RUN = TypeAdapter(Report)
_EXPERIMENT = TypeAdapter(ChaosExperiment)
_CHAOS = TypeAdapter(ChaosOverview)
_STOPPED = TypeAdapter(ChaosStopped)


class ApiError(CorralError):
    """The API answered with a problem; ``title``/``detail`` come from its problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.status = status
        self.title = title
        self.detail = detail


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Published(NamedTuple):
    """What a running system published in its state folder: its API and process."""

    url: str
    pid: int
    token: str


def published(state_dir: Path) -> Published | None:
    """The API a system running from ``state_dir`` published, while its process lives."""
    found = RunFiles(state_dir).read()
    if found is None:
        return None
    info, token = found
    pid = info.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid) or not isinstance(info.get("url"), str):
        return None
    return Published(str(info["url"]), pid, token)


class ApiClient:
    def __init__(self, url: str, token: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=f"{self.url}/{API_VERSION}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def for_state_dir(cls, state_dir: Path, *, timeout: float = 120.0) -> ApiClient:
        found = published(state_dir)
        if found is None:
            raise NotRunningError(f"no running system found in {state_dir}")
        return cls(found.url, found.token, timeout=timeout)

    def clone(self) -> ApiClient:
        """Another client of the same API (for a second thread: each has its own
        connections)."""
        return ApiClient(self.url, self._token, timeout=self._timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET":
            # Scaling and restarts answer when the new instances are ready, which can
            # take as long as the services take to start: wait for the answer.
            kwargs.setdefault("timeout", httpx.Timeout(self._timeout, read=None))
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise NotRunningError(
                f"the control plane at {self.url} did not answer in time ({exc!r})"
            ) from None
        except httpx.TransportError as exc:
            raise NotRunningError(f"cannot reach the control plane at {self.url}: {exc}") from None
        if response.status_code >= 400:
            _raise_problem(response)
        return response.json()

    def _parsed[T](self, model: TypeAdapter[T], method: str, path: str, **kwargs: Any) -> T:
        answer = self._request(method, path, **kwargs)
        try:
            return model.validate_python(answer)
        except ValidationError as exc:
            # A control plane of another corral version, most likely: say so, once.
            raise ApiError(
                502,
                "unexpected answer from the control plane",
                f"{method} {path} at {self.url} (is it another corral version?): "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
            ) from None

    def status(self) -> SystemStatus:
        return self._parsed(_STATUS, "GET", "/status")

    def instances(self) -> list[InstanceRecord]:
        return self._parsed(_INSTANCES, "GET", "/instances")

    def registry(self) -> Snapshot:
        return self._parsed(_SNAPSHOT, "GET", "/registry")

    def scale(self, service: str, replicas: int) -> ServiceChange:
        body = {"replicas": replicas}
        return self._parsed(_CHANGE, "POST", f"/services/{service}/scale", json=body)

    def restart(self, service: str, *, rolling: bool = False) -> ServiceChange:
        body = {"rolling": rolling}
        return self._parsed(_CHANGE, "POST", f"/services/{service}/restart", json=body)

    def start(self, service: str) -> ServiceChange:
        return self._parsed(_CHANGE, "POST", f"/services/{service}/start")

    def stop(self, service: str) -> ServiceChange:
        return self._parsed(_CHANGE, "POST", f"/services/{service}/stop")

    def chaos(self) -> ChaosOverview:
        return self._parsed(_CHAOS, "GET", "/chaos")

    def chaos_kill(self, target: str) -> ChaosExperiment:
        return self._parsed(_EXPERIMENT, "POST", "/chaos/kill", json={"target": target})

    def chaos_pause(self, target: str, seconds: float) -> ChaosExperiment:
        body = {"target": target, "seconds": seconds}
        return self._parsed(_EXPERIMENT, "POST", "/chaos/pause", json=body)

    def chaos_gateway(
        self,
        service: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment:
        body = {
            "service": service,
            "percent": percent,
            "abort_status": abort_status,
            "delay_ms": delay_ms,
            "seconds": seconds,
        }
        return self._parsed(_EXPERIMENT, "POST", "/chaos/gateway", json=body)

    def chaos_stop(self, experiment: str | None = None) -> list[ChaosExperiment]:
        """End one experiment (its id) or, without one, all of them."""
        if experiment is None:
            return self._parsed(_STOPPED, "DELETE", "/chaos").stopped
        return [self._parsed(_EXPERIMENT, "DELETE", f"/chaos/{experiment}")]

    def chaos_nats(self, mode: str, seconds: float | None = None) -> ChaosExperiment:
        body = {"mode": mode, "seconds": seconds}
        return self._parsed(_EXPERIMENT, "POST", "/chaos/nats", json=body)

    def chaos_database(self, service: str, seconds: float) -> ChaosExperiment:
        body = {"service": service, "seconds": seconds}
        return self._parsed(_EXPERIMENT, "POST", "/chaos/database", json=body)

    def chaos_calls(
        self,
        caller: str,
        target: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment:
        body = {
            "caller": caller,
            "target": target,
            "percent": percent,
            "abort_status": abort_status,
            "delay_ms": delay_ms,
            "seconds": seconds,
        }
        return self._parsed(_EXPERIMENT, "POST", "/chaos/calls", json=body)

    def chaos_cpu(self, target: str, percent: int, seconds: float) -> ChaosExperiment:
        body = {"target": target, "percent": percent, "seconds": seconds}
        return self._parsed(_EXPERIMENT, "POST", "/chaos/cpu", json=body)

    def chaos_runs(self, limit: int = 20) -> list[Report]:
        return self._parsed(_RUNS, "GET", "/chaos/runs", params={"limit": limit})

    def chaos_record(self, report: Report) -> Report:
        body = report.model_dump(mode="json")
        return self._parsed(_RUN, "POST", "/chaos/runs", json=body)

    def event_bus(self) -> dict[str, Any]:
        """Streams, consumer lag and dead letters (an ApiError 503 while NATS is down)."""
        return dict(self._request("GET", "/telemetry/events"))

    def down(self) -> dict[str, Any]:
        return dict(self._request("POST", "/down"))

    def dashboard_login(self) -> str:
        """A one-time dashboard login URL (the token rides in its fragment)."""
        link = self._request("POST", "/dashboard/login")
        return f"{self.url}{link['path']}"

    def telemetry_summary(self, *, window: float = 60.0) -> dict[str, Any]:
        return dict(self._request("GET", "/telemetry/summary", params={"window": window}))

    def traces(self, **filters: Any) -> list[dict[str, Any]]:
        """Kept traces, newest first: ``service``, ``route``, ``status="error"``,
        ``min_duration`` (ms), ``since``/``before`` (Unix), ``limit``."""
        params = {k: v for k, v in filters.items() if v is not None}
        return list(self._request("GET", "/traces", params=params))

    def trace(self, trace_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/traces/{trace_id}"))

    def search_logs(self, **filters: Any) -> list[dict[str, Any]]:
        """Kept log lines, newest first: ``service`` (a list), ``instance``, ``level``,
        ``q``, ``trace``, ``since``, ``before``, ``limit``."""
        params = {k: v for k, v in filters.items() if v not in (None, [], ())}
        return list(self._request("GET", "/telemetry/logs", params=params))

    def logs(
        self,
        services: Sequence[str] = (),
        *,
        since: float | None = None,
        tail: int | None = None,
    ) -> list[dict[str, Any]]:
        return list(self._request("GET", "/logs", params=_log_params(services, since, tail)))

    def follow_logs(
        self, services: Sequence[str] = (), *, since: float | None = None, tail: int | None = None
    ) -> Iterator[dict[str, Any]]:
        params = {**_log_params(services, since, tail), "follow": "true"}
        yield from self._events("/logs", params)

    def watch_registry(self) -> Iterator[dict[str, Any]]:
        yield from self._events("/registry/watch", {})

    def registry_snapshots(self) -> Iterator[Snapshot]:
        """The registry now, then each newer snapshot as it is made (server-sent events)."""
        for data in self.watch_registry():
            yield _SNAPSHOT.validate_python(data)

    def _events(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # Server-sent events are line-based; the few lines of parsing we need here are
        # simpler than another dependency (only `data:` lines carry payloads).
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_problem(response)
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        yield json.loads(line[5:].strip())
        except httpx.TransportError:
            return


def _log_params(services: Sequence[str], since: float | None, tail: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if services:
        params["service"] = list(services)
    if since is not None:
        params["since"] = since
    if tail is not None:
        params["tail"] = tail
    return params


def _raise_problem(response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        body = {}
    raise ApiError(
        response.status_code,
        str(body.get("title") or response.reason_phrase),
        body.get("detail"),
    )
