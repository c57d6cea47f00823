"""The watch endpoints (``corral up --watch``, ``corral watch``): reload one service's
code, as it is on disk now, with zero failed requests.

A reload that fails is an answer, not an error: the old instances keep serving and the
watcher shows why (the new code's log tail, from which it finds the file and line)."""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter

from corral.api._problems import ApiProblem
from corral.api._reload import ManifestApplied, ReloadResult
from corral.api._version import API_VERSION
from corral.manifest import ManifestError
from corral.runtime.errors import StartError

__all__ = ["WatchTarget", "watch_router"]

RELOAD_TIMEOUT = 30.0
"""Seconds new code may take to become ready before the reload counts as failed."""


@runtime_checkable
class WatchTarget(Protocol):
    """A control target that can swap a service's code (the running system's session)."""

    def has_service(self, service: str) -> bool: ...

    async def reload(self, service: str, *, ready_within: float | None = None) -> None:
        """Raises StartError when the new code cannot start (the old keeps serving)."""

    async def apply_manifest(self) -> Any:
        """The manifest on disk applied as a diff; an object with ``changed``, ``failed``
        and ``notes`` (lists of str). ManifestError when it is invalid: nothing changes."""


def watch_router(target: WatchTarget, *, admin: Any) -> APIRouter:
    router = APIRouter(prefix=f"/{API_VERSION}", dependencies=[admin], tags=["watch"])

    @router.post("/services/{service}/reload")
    async def reload(service: str) -> ReloadResult:
        """Start new instances of ``service`` (its code on disk now); once all are ready,
        drain and stop the old ones. If the new code exits or is not ready, it is stopped
        and the old instances keep serving: outcome ``failed``, with its log tail."""
        if not target.has_service(service):
            raise ApiProblem(404, "unknown service", f"no service named {service!r}")
        began = time.monotonic()
        try:
            await target.reload(service, ready_within=RELOAD_TIMEOUT)
        except StartError as exc:
            return ReloadResult(
                service=service,
                outcome="failed",
                seconds=time.monotonic() - began,
                reason=exc.reason,
                log_tail=list(exc.log_tail),
            )
        return ReloadResult(service=service, outcome="reloaded", seconds=time.monotonic() - began)

    @router.post("/manifest/apply")
    async def apply_manifest() -> ManifestApplied:
        """Read the manifest again and apply what changed: new services start, removed
        ones stop, changed ones are replaced or rescaled, routes change live in Envoy,
        configuration rolls out. An invalid manifest changes nothing: 422 with every
        problem located (file, line, key)."""
        try:
            done = await target.apply_manifest()
        except ManifestError as exc:
            raise ApiProblem(422, "invalid manifest", str(exc)) from None
        return ManifestApplied(changed=done.changed, failed=done.failed, notes=done.notes)

    return router
