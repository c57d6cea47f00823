"""The ``events:`` section: topics (streams), their producers and consumers, delivery policy.

Owned by the events work (issue 5).
"""

from __future__ import annotations

from pydantic import BaseModel

from corral.manifest._types import STRICT


class EventsSpec(BaseModel):
    model_config = STRICT
