"""corral.sdk.client: call other services by name, under the manifest's resilience policy.

Inside a service::

    payments = svc.client("payments")

    @svc.post("/rides/{ride}/pay")
    async def pay(ride: str) -> dict[str, object]:
        quote = await svc.client("pricing").get(f"/quotes/{ride}", fallback=lambda exc: None)
        response = await payments.post(
            "/charges", json={"ride": ride}, headers={"Idempotency-Key": ride}
        )
        return response.json()

Standalone (scripts, tests): ``async with ServiceClient("payments") as client: ...``.
Discovery comes from ``CORRAL_DISCOVERY``, policies from ``CORRAL_RESILIENCE`` (see
docs/resilience.md); errors are the tree in :mod:`corral.sdk.client._errors`.

The client and the resolvers (aiohttp) are resolved on first access: every service runs
the deadline middleware from this package, not every service calls another.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from corral.sdk.client._balancer import Balancing
from corral.sdk.client._breaker import CircuitBreaker, CircuitState
from corral.sdk.client._deadline import DeadlineMiddleware, current_deadline, deadline, remaining
from corral.sdk.client._errors import (
    BulkheadFullError,
    CallRejectedError,
    CircuitOpenError,
    DeadlineExceededError,
    NoInstancesError,
    ServiceCallError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from corral.sdk.client._hub import CIRCUITS_PATH, ClientHub
from corral.sdk.client._policy import (
    BreakerPolicy,
    BulkheadPolicy,
    Policies,
    Policy,
    RetryPolicy,
    RoutePolicy,
)
from corral.sdk.client._telemetry import ClientTelemetry

if TYPE_CHECKING:
    from corral.sdk.client._client import Fallback, Response, ServiceClient
    from corral.sdk.client._discovery import (
        DnsResolver,
        RegistryResolver,
        Resolver,
        StaticResolver,
        resolver_from_env,
    )

_LAZY = {
    **dict.fromkeys(("Fallback", "Response", "ServiceClient"), "_client"),
    **dict.fromkeys(
        ("DnsResolver", "RegistryResolver", "Resolver", "StaticResolver", "resolver_from_env"),
        "_discovery",
    ),
}

__all__ = [
    "CIRCUITS_PATH",
    "Balancing",
    "BreakerPolicy",
    "BulkheadFullError",
    "BulkheadPolicy",
    "CallRejectedError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ClientHub",
    "ClientTelemetry",
    "DeadlineExceededError",
    "DeadlineMiddleware",
    "DnsResolver",
    "Fallback",
    "NoInstancesError",
    "Policies",
    "Policy",
    "RegistryResolver",
    "Resolver",
    "Response",
    "RetryPolicy",
    "RoutePolicy",
    "ServiceCallError",
    "ServiceClient",
    "StaticResolver",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "current_deadline",
    "deadline",
    "remaining",
    "resolver_from_env",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the names whose modules import aiohttp.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
