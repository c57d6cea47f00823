"""Run-wide hooks: no system a test started outlives the test run (tests/leftovers.py)."""

from __future__ import annotations

import pytest

import leftovers


def pytest_sessionstart(session: pytest.Session) -> None:
    leftovers.stop_abandoned(session)


def pytest_sessionfinish(session: pytest.Session) -> None:
    leftovers.stop_own(session)
