"""front: GET /greet/{name} asks greeter over HTTP and dresses the answer up.

``svc.client("greeter")`` finds greeter's instances by name (the orchestrator's registry
under ``corral up``, DNS on Kubernetes, ``CORRAL_URL_GREETER`` where it is set) and
protects the call with the manifest's resilience policy: a timeout, retries with
jitter for this idempotent GET, a circuit breaker and a bulkhead.
"""

from __future__ import annotations

from typing import Literal

from corral.sdk import Problem, Service, ServiceSettings
from corral.sdk.client import ServiceCallError


class Settings(ServiceSettings):
    greeting_style: Literal["friendly", "formal"] = "friendly"


svc = Service("front", settings=Settings)


@svc.get("/greet/{name}")
async def greet(name: str) -> dict[str, str]:
    try:
        response = await svc.client("greeter").get(f"/hello/{name}")
    except ServiceCallError as exc:
        raise Problem(502, "greeter unavailable", detail=str(exc)) from exc
    if response.status_code != 200:
        raise Problem(502, "greeter failed", detail=f"status {response.status_code}")
    message = str(response.json()["message"])
    if svc.settings.greeting_style == "friendly":
        message = f"{message}! :)"
    else:
        message = message.capitalize() + "."
    return {"greeting": message, "served_by": str(response.json()["served_by"])}
