"""What a run found: each probe's value against its tolerance, each step, the verdict.
Written by the runner, recorded by the control plane (``corral chaos list``, the
dashboard) and printed by ``corral chaos run --json``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["held", "not held"]
Phase = Literal["before", "during", "after"]


class ProbeResult(BaseModel):
    probe: str = Field(description="The probe's name or description.")
    type: str
    held: bool
    value: float | int | str | None = Field(
        default=None, description="What was observed (a rate, seconds, a count, a status)."
    )
    detail: str = ""
    at: float = Field(description="Unix time of the observation.")


class Check(BaseModel):
    """The whole hypothesis, once."""

    phase: Phase
    at: float
    held: bool
    probes: list[ProbeResult]


class StepResult(BaseModel):
    step: str
    action: str
    started_at: float
    ended_at: float | None = None
    ok: bool = True
    detail: str = ""
    experiments: list[str] = Field(
        default_factory=list, description="The control plane's ids of the faults it began."
    )


class Report(BaseModel):
    id: str = Field(description="run-<unix ms>; unique per system.")
    title: str
    file: str
    system: str | None = None
    started_at: float
    ended_at: float | None = None
    verdict: Verdict
    reason: str = Field(description="One line: why it held or not.")
    before: Check | None = None
    during: list[Check] = Field(
        default_factory=list,
        description="Checks made during the method: every failed one, and held ones while fewer "
        "than 200 are kept.",
    )
    during_checks: int = Field(default=0, description="Checks made during the method.")
    during_failed: int = Field(default=0, description="How many of them did not hold.")
    after: Check | None = None
    after_attempts: int = 0
    steps: list[StepResult] = Field(default_factory=list)
    rollbacks: list[StepResult] = Field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.verdict == "held"
