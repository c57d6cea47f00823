"""What a reload answers (shared by the watch endpoints and their client)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ManifestApplied", "ReloadResult"]


class ReloadResult(BaseModel):
    service: str
    outcome: Literal["reloaded", "failed"]
    seconds: float = Field(description="From the request to the last old instance stopped.")
    reason: str | None = Field(default=None, description="Why the new code did not start.")
    log_tail: list[str] = Field(default_factory=list, description="Its last log lines.")


class ManifestApplied(BaseModel):
    changed: list[str] = Field(default_factory=list, description="What changed, per service.")
    failed: list[str] = Field(
        default_factory=list, description="Services whose new instances did not start, why."
    )
    notes: list[str] = Field(
        default_factory=list, description="Changes that take effect at the next corral up."
    )
