"""Calling another ridehail service by name, under the manifest's resilience policy.

``svc.client(target)`` (corral.sdk.client's ClientHub) when the SDK's Service offers it;
until then a :class:`corral.sdk.client.ServiceClient` of our own, closed with the service.
Both resolve instances through ``CORRAL_DISCOVERY`` and take their policy from
``CORRAL_RESILIENCE``.
"""

from __future__ import annotations

from typing import Any

from corral.sdk import Service
from corral.sdk.client import ServiceClient


class _OwnClient:
    def __init__(self, target: str) -> None:
        self.target = target
        self.client: ServiceClient | None = None

    async def start(self) -> None:
        self.client = ServiceClient(self.target)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class Calls:
    """``calls = Calls(svc, "payments")``; ``await calls().get(...)`` inside handlers."""

    def __init__(self, svc: Service[Any], target: str) -> None:
        self._svc = svc
        self._target = target
        self._own: _OwnClient | None = None
        if not hasattr(svc, "client"):
            self._own = _OwnClient(target)
            svc.add_lifecycle(self._own)

    def __call__(self) -> ServiceClient:
        if self._own is None:
            client: ServiceClient = self._svc.client(self._target)
            return client
        assert self._own.client is not None, "the service is not started"
        return self._own.client
