"""The ``resilience:`` section: policies for service-to-service calls, per target service.

Owned by the discovery and resilience work (issue 6).
"""

from __future__ import annotations

from pydantic import BaseModel

from corral.manifest._types import STRICT


class ResilienceSpec(BaseModel):
    model_config = STRICT
