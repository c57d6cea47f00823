"""The payload of the test system's one topic."""

from __future__ import annotations

from pydantic import BaseModel


class Thing(BaseModel):
    n: int
