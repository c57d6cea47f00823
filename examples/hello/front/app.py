"""front: GET /greet/{name} asks greeter over HTTP and dresses the answer up.

greeter's base URL comes from ``CORRAL_URL_GREETER`` (the runtime contract's static
discovery variable); a discovery client replaces this later. The HTTP client is a
lifecycle component: opened at start, closed at stop.
"""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import AnyHttpUrl, Field

from corral import contract
from corral.sdk import Problem, Service, ServiceSettings, inject_trace_headers


class Settings(ServiceSettings):
    greeting_style: Literal["friendly", "formal"] = "friendly"
    greeter_url: AnyHttpUrl = Field(
        validation_alias=contract.service_url_variable("greeter"),
    )


svc = Service("front", settings=Settings)


class GreeterClient:
    """An httpx client to greeter, started and stopped with the service."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        base_url = str(svc.settings.greeter_url)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=5.0)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def hello(self, name: str) -> str:
        assert self._client is not None
        try:
            response = await self._client.get(f"/hello/{name}", headers=inject_trace_headers())
        except httpx.HTTPError as exc:
            raise Problem(502, "greeter unreachable", detail=str(exc)) from exc
        if response.status_code != 200:
            raise Problem(502, "greeter failed", detail=f"status {response.status_code}")
        message: str = response.json()["message"]
        return message


greeter = GreeterClient()
svc.add_lifecycle(greeter)


@svc.get("/greet/{name}")
async def greet(name: str) -> dict[str, str]:
    message = await greeter.hello(name)
    if svc.settings.greeting_style == "friendly":
        message = f"{message}! :)"
    else:
        message = message.capitalize() + "."
    return {"greeting": message}
