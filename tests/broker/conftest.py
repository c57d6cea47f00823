"""Broker tests reuse the events test helpers (real nats-servers)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "sdk"))

from events.conftest import embedded_nats, nats_url, spans, system, tmp_db  # noqa: F401
