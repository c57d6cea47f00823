"""A service with reloadable and restart-only settings, for the live configuration tests."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, SecretStr

from corral.sdk import ConfigChange, Service, ServiceSettings


class Settings(ServiceSettings):
    greeting: str = Field(default="hello", json_schema_extra={"reloadable": True})
    rate: float = Field(default=0.0, ge=0, le=1, json_schema_extra={"reloadable": True})
    # Not in the manifest: `config set` accepts it because the instances report it.
    style: str = Field(default="plain", json_schema_extra={"reloadable": True})
    workers: int = Field(default=1, ge=1, le=8)  # read once at start: changing it restarts
    api_key: SecretStr | None = None


svc = Service("tunable", settings=Settings)
seen: list[dict[str, Any]] = []


@svc.on_config_change
async def remember(change: ConfigChange) -> None:
    seen.append({"version": change.version, "fields": sorted(change.fields)})


@svc.on_startup
async def announce() -> None:
    key = svc.settings.api_key
    # A log line holding the secret: the SDK must redact it.
    svc.log.info("configured", api_key=key.get_secret_value() if key else None)


@svc.get("/")
async def root() -> dict[str, Any]:
    s = svc.settings
    return {
        "greeting": s.greeting,
        "rate": s.rate,
        "workers": s.workers,
        "instance": svc.instance,
        "pid": os.getpid(),
        "changes": seen,
        "api_key_set": s.api_key is not None,
    }
