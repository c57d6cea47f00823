"""The clients of one :class:`~corral.sdk.Service`: ``svc.client("payments")``.

One resolver (one registry watch) and one set of policies per service, one cached
:class:`ServiceClient` per target, metrics in the service's registry, and all of it
closed when the service stops (it registers itself with ``add_lifecycle``). It also
installs the circuits endpoint (``GET /corral/circuits``) that ``corral status`` reads.
Incoming deadlines are read by the SDK's own middleware (one ASGI layer less than
:class:`DeadlineMiddleware`, which stays for plain FastAPI apps).

A call to a target the manifest's ``calls:`` does not list (``CORRAL_CALLS``) still goes
out, so nothing breaks, but logs one warning per target: the call graph ``corral lint``
checks is the declared one, and a call it does not know about is where it goes wrong.

Under a control plane it also follows the feed of caller-side chaos faults
(``_faults.FaultFeed``, started at start-up when the service declares calls, else with
its first client) and sets each client's ``fault``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from corral import contract

if TYPE_CHECKING:
    from corral.sdk._service import Service
    from corral.sdk.client._balancer import Balancing
    from corral.sdk.client._client import ServiceClient
    from corral.sdk.client._discovery import Resolver
    from corral.sdk.client._faults import CallFault, FaultFeed
    from corral.sdk.client._policy import Policies
    from corral.sdk.client._telemetry import ClientTelemetry

__all__ = ["CIRCUITS_PATH", "ClientHub"]

CIRCUITS_PATH = contract.CIRCUITS_PATH
"""JSON: ``{"service", "instance", "circuits": [{"target", "state", ...}]}``."""


class ClientHub:
    def __init__(self, service: Service[Any]) -> None:
        self._service = service
        self._clients: dict[str, ServiceClient] = {}
        self._internal: dict[str, ServiceClient] = {}
        self._resolver: Resolver | None = None
        self._policies: Policies | None = None
        self._telemetry: ClientTelemetry | None = None
        self._running = False
        self._warned: set[str] = set()
        self._feed: FaultFeed | None = None
        self._faults: Mapping[str, CallFault] = {}
        service.app.add_api_route(
            CIRCUITS_PATH, self._circuits_endpoint, methods=["GET"], include_in_schema=False
        )
        service.add_lifecycle(self)

    def get(self, target: str, *, balancing: Balancing | str | None = None) -> ServiceClient:
        """The client for ``target`` (created on first use, then cached)."""
        client = self._clients.get(target)
        if client is None:
            client = self._new_client(target, balancing=balancing, forward_identity=True)
            self._clients[target] = client
            if self._running:
                self._check_declared(target)
                self._follow_faults()
        return client

    def _new_client(
        self, target: str, *, balancing: Balancing | str | None, forward_identity: bool
    ) -> ServiceClient:
        from corral.sdk.client._client import ServiceClient
        from corral.sdk.client._discovery import resolver_from_env
        from corral.sdk.client._policy import Policies
        from corral.sdk.client._telemetry import ClientTelemetry

        if self._resolver is None:
            self._resolver = resolver_from_env()
        if self._policies is None:
            self._policies = Policies.from_env()
        if self._telemetry is None:
            self._telemetry = ClientTelemetry(self._service.metrics.registry)
        client = ServiceClient(
            target,
            resolver=self._resolver,
            policy=self._policies.for_target(target),
            telemetry=self._telemetry,
            balancing=balancing or "round_robin",
            caller=self._caller(),
            tracer=self._tracer(),
            own_resolver=False,
            forward_identity=forward_identity,
        )
        client.fault = self._faults.get(target)
        return client

    def internal(self, target: str) -> ServiceClient:
        """A client for the SDK's own calls (identity keys): the service's discovery and
        policy towards ``target``, but not a call the service's code makes, so neither
        checked against ``calls:`` nor listed in the circuits; it forwards no identity."""
        client = self._internal.get(target)
        if client is None:
            client = self._new_client(target, balancing=None, forward_identity=False)
            self._internal[target] = client
            if self._running:
                self._follow_faults()
        return client

    # -- caller-side chaos faults -------------------------------------------------------
    def _follow_faults(self) -> None:
        """Start following the fault feed (once, with the first client, on the loop)."""
        if self._feed is not None:
            return
        from corral.sdk.client._faults import FaultFeed

        self._feed = FaultFeed.from_environment(
            os.environ, caller=self._caller(), on_change=self.apply_faults
        )
        if self._feed is not None:
            self._feed.start()

    def _declares_calls(self) -> bool:
        try:
            return bool(self._service.runtime.declared_calls)
        except Exception:  # settings unreadable: the service fails to start anyway
            return False

    def apply_faults(self, faults: Mapping[str, CallFault]) -> None:
        """Give each client the fault on its target now (None: none)."""
        self._faults = faults
        for client in (*self._clients.values(), *self._internal.values()):
            client.fault = faults.get(client.target)

    def circuits(self) -> list[dict[str, object]]:
        return [client.circuit() for _, client in sorted(self._clients.items())]

    async def _circuits_endpoint(self) -> JSONResponse:
        service = self._service
        return JSONResponse(
            {"service": service.name, "instance": service.instance, "circuits": self.circuits()}
        )

    def _caller(self) -> str | None:
        try:
            return self._service.service_name
        except Exception:  # settings not readable yet: the env var decides later
            return None

    def _check_declared(self, target: str) -> None:
        """One warning per target the manifest does not declare calling (none when the
        manifest declares nothing for this service)."""
        if target in self._warned:
            return
        try:
            runtime = self._service.runtime
        except Exception:  # settings unreadable: the service fails to start anyway
            return
        declared = runtime.declared_calls
        if declared is None or target in declared:
            return
        self._warned.add(target)
        me = runtime.service or self._service.name
        self._service.log.warning(
            "call to a service the manifest does not declare",
            target=target,
            declared=sorted(declared),
            hint=f"add {target!r} to services.{me}.calls in corral.yaml",
        )

    def _tracer(self) -> Any:
        return self._service.tracer if self._service.export_spans else None

    # -- Lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        tracer = self._tracer()
        for client in self._clients.values():
            client.tracer = tracer
            if client.caller is None:
                client.caller = self._caller()
            self._check_declared(client.target)
        if self._clients or self._internal or self._declares_calls():
            # A service that declares calls follows the fault feed from the start, so a
            # fault is there before its first call (not only from the call after it).
            self._follow_faults()

    async def stop(self) -> None:
        self._running = False
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await feed.stop()
        clients = [*self._clients.values(), *self._internal.values()]
        self._clients, self._internal = {}, {}
        for client in clients:
            await client.aclose()
        if self._resolver is not None:
            resolver, self._resolver = self._resolver, None
            await resolver.stop()
