"""A small synchronous client of the control-plane API, for the CLI and scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from corral.api._files import RunFiles
from corral.api._version import API_VERSION


class ApiError(Exception):
    """The API answered with a problem; ``title``/``detail`` come from its problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.status = status
        self.title = title
        self.detail = detail


class NotRunningError(Exception):
    """No system is running for this manifest (no API address published, or it is gone)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ApiClient:
    def __init__(self, url: str, token: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=f"{self.url}/{API_VERSION}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> ApiClient:
        found = RunFiles(state_dir).read()
        if found is None:
            raise NotRunningError(f"no running system found in {state_dir}")
        info, token = found
        if not _pid_alive(int(info.get("pid", 0))):
            raise NotRunningError(f"the system recorded in {state_dir} is no longer running")
        return cls(str(info["url"]), token)

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

    def status(self) -> dict[str, Any]:
        return dict(self._request("GET", "/status"))

    def instances(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/instances"))

    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        return dict(
            self._request("POST", f"/services/{service}/scale", json={"replicas": replicas})
        )

    def restart(self, service: str, *, rolling: bool = False) -> dict[str, Any]:
        return dict(
            self._request("POST", f"/services/{service}/restart", json={"rolling": rolling})
        )

    def stop(self, service: str) -> dict[str, Any]:
        return dict(self._request("POST", f"/services/{service}/stop"))

    def chaos(self) -> dict[str, Any]:
        return dict(self._request("GET", "/chaos"))

    def chaos_kill(self, target: str) -> dict[str, Any]:
        return dict(self._request("POST", "/chaos/kill", json={"target": target}))

    def chaos_pause(self, target: str, seconds: float) -> dict[str, Any]:
        body = {"target": target, "seconds": seconds}
        return dict(self._request("POST", "/chaos/pause", json=body))

    def chaos_gateway(
        self,
        service: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> dict[str, Any]:
        body = {
            "service": service,
            "percent": percent,
            "abort_status": abort_status,
            "delay_ms": delay_ms,
            "seconds": seconds,
        }
        return dict(self._request("POST", "/chaos/gateway", json=body))

    def chaos_stop(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """End one experiment (its id) or, without one, all of them."""
        if experiment is None:
            return list(self._request("DELETE", "/chaos")["stopped"])
        return [dict(self._request("DELETE", f"/chaos/{experiment}"))]

    def down(self) -> dict[str, Any]:
        return dict(self._request("POST", "/down"))

    def dashboard_login(self) -> str:
        """A one-time dashboard login URL (the token rides in its fragment)."""
        link = self._request("POST", "/dashboard/login")
        return f"{self.url}{link['path']}"

    def telemetry_summary(self, *, window: float = 60.0) -> dict[str, Any]:
        return dict(self._request("GET", "/telemetry/summary", params={"window": window}))

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
