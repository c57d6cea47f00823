"""The control plane's failure-injection experiments as the API answers them (``GET
/v1/chaos``, ``POST /v1/chaos/kill`` ...): one model for the control plane that makes
them, the API that declares them in its OpenAPI, the client that parses them and the CLI
that prints them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ExperimentKind = Literal["kill", "pause", "gateway", "nats", "database", "calls", "cpu"]
ExperimentState = Literal["active", "expired", "stopped", "done", "failed"]


class ChaosExperiment(BaseModel):
    """One experiment begun by ``corral chaos`` (or a step of ``corral chaos run``)."""

    id: str = Field(description="chaos-<n>, counted per running system.")
    kind: ExperimentKind
    target: str = Field(
        description="The instance (kill, pause, cpu, nats) or service (calls: the one called)."
    )
    state: ExperimentState = Field(
        description="active, then expired (on time), stopped (asked), done (a kill or a "
        "restart) or failed."
    )
    detail: str = Field(description="What was done, e.g. `SIGSTOP to process group 4242`.")
    started_at: float = Field(description="Unix time.")
    expires_at: float | None = Field(description="Unix time; null for a kill or a restart.")
    remaining: float | None = Field(description="Seconds left while active and timed.")
    ended_at: float | None = None
    outcome: str | None = Field(default=None, description="How it ended, once it has.")
    # The parameters it was begun with (null when its kind takes none of them).
    seconds: float | None = None
    percent: int | None = Field(default=None, description="gateway, calls: the share of requests.")
    abort_status: int | None = Field(
        default=None, description="gateway, calls: the status answered."
    )
    delay_ms: int | None = Field(default=None, description="gateway, calls: the delay added.")
    caller: str | None = Field(
        default=None, description="calls: the calling service, whose client injects the fault."
    )
    mode: Literal["kill", "restart", "pause"] | None = Field(
        default=None, description="nats: the fault."
    )


class ChaosOverview(BaseModel):
    """``GET /v1/chaos``: the active experiments and the recently ended, newest first."""

    active: list[ChaosExperiment]
    recent: list[ChaosExperiment]


class ChaosStopped(BaseModel):
    """``DELETE /v1/chaos``: the experiments it ended."""

    stopped: list[ChaosExperiment]
