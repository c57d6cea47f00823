"""Fixtures for runtime tests: orchestrators that always go down."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import Recorder, make_plan

from corral.runtime.orchestrator import Orchestrator


@pytest.fixture(autouse=True)
def own_systems_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orchestrators (and the drivers they run in) record themselves in the test's own
    list of running systems, not the user's."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


@pytest.fixture
async def orchestrators() -> AsyncIterator[list[Orchestrator]]:
    """Orchestrators appended here are always taken down after the test."""
    made: list[Orchestrator] = []
    yield made
    for orch in made:
        await orch.down()


@pytest.fixture
def system(
    tmp_path: Path, orchestrators: list[Orchestrator]
) -> Callable[..., tuple[Orchestrator, Recorder]]:
    """system(services, **orchestrator kwargs) -> (orchestrator, event recorder)."""

    def build(services: dict[str, Any], **kwargs: Any) -> tuple[Orchestrator, Recorder]:
        manifest, plan = make_plan(tmp_path, services)
        recorder = Recorder()
        kwargs.setdefault("start_timeout", 20.0)
        orch = Orchestrator(plan, manifest_path=manifest.path, on_event=recorder, **kwargs)
        orchestrators.append(orch)
        return orch, recorder

    return build
