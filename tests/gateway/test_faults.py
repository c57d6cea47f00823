"""Chaos faults as Envoy runtime values: what is set to switch one on, and to clear it."""

from __future__ import annotations

import pytest

from corral.gateway import Fault

K = "corral.fault.web."

CASES = [
    (
        "abort only: its percent and status; the delay keys cleared",
        Fault("web", 30, abort_status=503),
        {K + "abort_percent": "30", K + "abort_status": "503", K + "delay_percent": "",
         K + "delay_ms": ""},
    ),
    (
        "delay only",
        Fault("web", 100, delay_ms=200),
        {K + "abort_percent": "", K + "abort_status": "", K + "delay_percent": "100",
         K + "delay_ms": "200"},
    ),
    (
        "both, on the same share of requests",
        Fault("web", 5, abort_status=500, delay_ms=50),
        {K + "abort_percent": "5", K + "abort_status": "500", K + "delay_percent": "5",
         K + "delay_ms": "50"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_overrides(fault: Fault, expected: dict[str, str]) -> None:
    """Each fault sets exactly its service's four keys (unused ones emptied: removed)."""
    assert fault.overrides() == expected
    assert fault.cleared() == dict.fromkeys(expected, "")
