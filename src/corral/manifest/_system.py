"""The whole manifest: a named system of services."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from corral.manifest._events import EventsSpec
from corral.manifest._gateway import GatewaySpec
from corral.manifest._resilience import ResilienceSpec
from corral.manifest._service import ServiceSpec
from corral.manifest._types import STRICT, Duration, MemoryBytes, Name


class PostgresSpec(BaseModel):
    """A PostgreSQL server on which each postgres service gets its own database and role."""

    model_config = STRICT

    url: str = Field(description="Admin URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")


class DatabasesSpec(BaseModel):
    model_config = STRICT

    postgres: PostgresSpec | None = None


class TelemetrySpec(BaseModel):
    """What the kept telemetry store (``.corral/telemetry/``) holds: traces, log lines
    and metrics older than ``keep`` go, and the oldest go early past ``max_size``.
    ``CORRAL_TELEMETRY_KEEP``/``CORRAL_TELEMETRY_MAX_SIZE`` in the shell override them."""

    model_config = STRICT

    keep: Duration | None = Field(default=None, description="How long, e.g. 24h (default), 168h.")
    max_size: MemoryBytes | None = Field(
        default=None, description="How large, e.g. 512Mi (default), 2Gi."
    )

    @field_validator("keep")
    @classmethod
    def _a_minute_at_least(cls, value: float | None) -> float | None:
        if value is not None and value < 60:
            raise ValueError("keep telemetry for a minute at least (e.g. 90m, 24h)")
        return value

    @field_validator("max_size")
    @classmethod
    def _room_for_something(cls, value: int | None) -> int | None:
        if value is not None and value < 16 * 2**20:
            raise ValueError("the telemetry store needs 16Mi at least (e.g. 512Mi, 2Gi)")
        return value


class SystemSpec(BaseModel):
    """A ``corral.yaml`` document."""

    model_config = STRICT

    name: Name
    services: dict[Name, ServiceSpec]
    databases: DatabasesSpec = DatabasesSpec()
    gateway: GatewaySpec | None = None
    events: EventsSpec | None = None
    resilience: ResilienceSpec | None = None
    telemetry: TelemetrySpec | None = None
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
