"""A service for the real-process tests: a slow endpoint and secret settings."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from corral.sdk import Service, ServiceSettings


class Settings(ServiceSettings):
    api_token: SecretStr
    slow_seconds: float = 2.0


svc = Service("slowapp", settings=Settings)


@svc.get("/slow")
async def slow() -> dict[str, str]:
    await asyncio.sleep(svc.settings.slow_seconds)
    return {"done": "yes"}


@svc.get("/leak")
async def leak() -> dict[str, bool]:
    svc.log.info("about to leak", token=svc.settings.api_token.get_secret_value())
    return {"leaked": False}
