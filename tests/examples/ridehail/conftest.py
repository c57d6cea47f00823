"""Ridehail tests import the services the way ``corral.sdk.serve`` does: from the example
directory, as top-level packages (auth, rides, matching, payments, tracking, fakepay)."""

from __future__ import annotations

import sys
from pathlib import Path

RIDEHAIL = Path(__file__).resolve().parents[3] / "examples" / "ridehail"
if str(RIDEHAIL) not in sys.path:
    sys.path.insert(0, str(RIDEHAIL))
