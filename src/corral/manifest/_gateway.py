"""The ``gateway:`` section: Envoy routes, auth, rate limits and per-service traffic policy.

Owned by the gateway work (issue 4); see docs/manifest.md for the reference.
"""

from __future__ import annotations

from pydantic import BaseModel

from corral.manifest._types import STRICT


class GatewaySpec(BaseModel):
    model_config = STRICT
