"""The start-up timeline: where ``up``'s time went, phase by phase, in order."""

from __future__ import annotations

import pytest
from runtime_helpers import service

from corral.runtime.timeline import Timeline

pytestmark = pytest.mark.timeout(30)


def test_a_phase_keeps_its_first_start_and_nothing_is_recorded_once_finished() -> None:
    """Only the first start of a name counts (a restart does not move it); after
    ``finish`` the timeline no longer changes."""
    timeline = Timeline(origin=100.0)
    timeline.span("imports", 100.0, 101.5)
    timeline.begin("web")
    first = timeline.phases()[1].start
    timeline.begin("web")
    timeline.mark("web", "listening")
    timeline.mark("unknown", "listening")
    timeline.end("web")
    timeline.finish()
    timeline.begin("late")
    timeline.end("imports")
    phases = {p.name: p for p in timeline.phases()}
    assert list(phases) == ["imports", "web"]
    assert (phases["imports"].start, phases["imports"].end) == (0.0, 1.5)
    assert phases["web"].start == first
    assert phases["web"].end is not None
    assert phases["web"].seconds is not None
    assert phases["web"].start <= phases["web"].marks["listening"] <= phases["web"].end


async def test_up_records_each_service_and_instance_in_order(system) -> None:
    """After ``up``: a phase per service and per instance, each instance listening
    before it was ready, a dependant's dependencies met after its dependency was ready,
    and all of it inside ``up``; status carries the same phases."""
    orch, _ = system(
        {
            "db": service(),
            "web": service(replicas=2, depends_on={"db": "healthy"}),
        }
    )
    await orch.up()
    phases = {p.name: p for p in orch.status().startup}
    assert {"up", "service db", "service web", "instance db-1", "instance web-1"} <= set(phases)
    up = phases["up"]
    assert up.end is not None
    for name in ("instance db-1", "instance web-1", "instance web-2"):
        phase = phases[name]
        assert phase.end is not None
        assert up.start <= phase.start <= phase.marks["listening"] <= phase.end <= up.end
    db_ready = phases["service db"].end
    assert db_ready is not None
    assert phases["service web"].marks["dependencies met"] >= db_ready
    assert phases["instance web-1"].start >= db_ready
