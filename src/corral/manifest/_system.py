"""The whole manifest: a named system of services."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from corral.manifest._events import EventsSpec
from corral.manifest._gateway import GatewaySpec
from corral.manifest._resilience import ResilienceSpec
from corral.manifest._service import ServiceSpec
from corral.manifest._types import STRICT, Name


class PostgresSpec(BaseModel):
    """A PostgreSQL server on which each postgres service gets its own database and role."""

    model_config = STRICT

    url: str = Field(description="Admin URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")


class DatabasesSpec(BaseModel):
    model_config = STRICT

    postgres: PostgresSpec | None = None


class SystemSpec(BaseModel):
    """A ``corral.yaml`` document."""

    model_config = STRICT

    name: Name
    services: dict[Name, ServiceSpec]
    databases: DatabasesSpec = DatabasesSpec()
    gateway: GatewaySpec | None = None
    events: EventsSpec | None = None
    resilience: ResilienceSpec | None = None
    runtime: Literal["process", "docker", "podman"] | None = Field(
        default=None,
        description="What runs the instances under `corral up` (default process); "
        "`--runtime` and CORRAL_RUNTIME override it.",
    )

    @field_validator("services")
    @classmethod
    def _at_least_one(cls, value: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        if not value:
            raise ValueError("a system needs at least one service")
        return value
