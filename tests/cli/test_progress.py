"""Progress from registry snapshots: start-up rows and change transitions (pure), and
that a change shows its end."""

from __future__ import annotations

import io
import itertools

import pytest
from rich.console import Console

from corral.cli._progress import Transition, service_progress, transitions, with_progress
from corral.runtime.registry import InstanceRecord, InstanceState, Snapshot

_ports = itertools.count(8000)


def inst(
    service: str, state: str, ready: bool = False, message: str | None = None
) -> InstanceRecord:
    port = next(_ports)
    return InstanceRecord(
        service,
        f"{service}-{port}",
        "127.0.0.1",
        port,
        InstanceState(state),
        ready,
        message=message,
    )


CASES = [
    pytest.param([], {"web": "waiting"}, id="nothing yet"),
    pytest.param([inst("web", "pending")], {"web": "waiting"}, id="pending"),
    pytest.param([inst("web", "starting")], {"web": "starting"}, id="starting"),
    pytest.param(
        [inst("web", "running", True), inst("web", "starting")], {"web": "starting"}, id="1 of 2"
    ),
    pytest.param(
        [inst("web", "running", True), inst("web", "running", True)], {"web": "ready"}, id="2 of 2"
    ),
    pytest.param(
        [inst("web", "crashloop", message="exited with 3")], {"web": "failing"}, id="crashloop"
    ),
    pytest.param(
        [inst("web", "draining", True), inst("web", "running", True)],
        {"web": "starting"},
        id="draining does not count",
    ),
]


@pytest.mark.parametrize(("instances", "expected"), CASES)
def test_service_state(instances: list[InstanceRecord], expected: dict[str, str]) -> None:
    """Each registry situation maps to the state shown on the service's line."""
    rows = service_progress({"web": 2}, instances, started_at=0.0, ready_at={}, now=1.5)
    assert {r.service: r.state for r in rows} == expected


def test_ready_time_is_when_the_service_first_became_ready() -> None:
    """The time shown for a ready service is fixed at the moment it became ready."""
    ready_at: dict[str, float] = {}
    ready = [inst("web", "running", True)]
    first = service_progress({"web": 1}, ready, started_at=10.0, ready_at=ready_at, now=10.4)
    later = service_progress({"web": 1}, ready, started_at=10.0, ready_at=ready_at, now=20.0)
    assert first[0].seconds == pytest.approx(0.4)
    assert later[0].seconds == pytest.approx(0.4)


def test_failing_service_shows_the_instance_message() -> None:
    """A crash-looping service shows why."""
    rows = service_progress(
        {"web": 1},
        [inst("web", "crashloop", message="exited with code 3")],
        started_at=0,
        ready_at={},
        now=1,
    )
    assert rows[0].message == "exited with code 3"


def rec(
    instance: str, state: str, ready: bool = False, message: str | None = None
) -> InstanceRecord:
    service = instance.rsplit("-", 1)[0]
    return InstanceRecord(
        service, instance, "127.0.0.1", 1, InstanceState(state), ready, message=message
    )


def shown(steps: list[list[InstanceRecord]], services: set[str] | None = None) -> list[Transition]:
    """Every transition printed while the registry goes through ``steps``."""
    _, phases = transitions({}, steps[0], services)
    seen: list[Transition] = []
    for step in steps[1:]:
        found, phases = transitions(phases, step, services)
        seen.extend(found)
    return seen


def test_transitions_of_a_rolling_restart() -> None:
    """A replacement appears and becomes ready, the old instance drains and goes; each
    change is one line, and nothing repeats."""
    steps = [
        [rec("web-1", "running", True)],
        [rec("web-1", "running", True), rec("web-2", "starting")],
        [rec("web-1", "running", True), rec("web-2", "running", True)],
        [rec("web-1", "draining", True), rec("web-2", "running", True)],
        [rec("web-1", "draining", True), rec("web-2", "running", True)],
        [rec("web-1", "exited", message="stopped"), rec("web-2", "running", True)],
        [rec("web-2", "running", True)],
    ]
    assert shown(steps) == [
        ("web-2", "starting", None),
        ("web-2", "ready", None),
        ("web-1", "draining", None),
        ("web-1", "stopped", None),  # exiting while stopped is no failure, said once
    ]


def test_within_one_snapshot_readiness_comes_before_stopping() -> None:
    """Changes seen in one poll are shown in the order a change makes them, not in
    registry order (rides-1 stopping was printed before rides-3 ready)."""
    steps = [
        [rec("rides-1", "running", True), rec("rides-3", "starting")],
        [rec("rides-1", "stopping"), rec("rides-3", "running", True)],
    ]
    assert shown(steps) == [("rides-3", "ready", None), ("rides-1", "stopping", None)]


def test_transitions_say_why_an_instance_fails_and_keep_to_the_services_asked() -> None:
    """A crash carries the instance's message; other services (and, by default, Corral's
    own components) are left out."""
    before = [rec("web-1", "running", True), rec("api-1", "running", True)]
    after = [rec("web-1", "backoff", message="exited with code 3"), rec("api-1", "starting")]
    assert shown([before, after], {"web"}) == [("web-1", "backoff", "exited with code 3")]
    envoy = InstanceRecord(
        "gateway", "gateway-1", "127.0.0.1", 1, InstanceState.STARTING, component=True
    )
    assert shown([[], [envoy]]) == []


class FakeApi:
    """An API whose registry answers from a list of snapshots, the last one repeated."""

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.snapshots = snapshots

    def clone(self) -> FakeApi:
        return self

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def registry(self) -> Snapshot:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]


def test_a_change_faster_than_a_poll_still_shows_its_end() -> None:
    """The registry is read once more after the change returns: a stop that took less
    than one poll printed nothing but its summary."""
    before = Snapshot(1, (rec("web-1", "running", True), rec("web-2", "running", True)))
    after = Snapshot(2, ())
    out = io.StringIO()
    console = Console(file=out, width=120)
    answer = with_progress(
        FakeApi([before, after]),  # type: ignore[arg-type]
        console,
        lambda: "done",
        doing="stopping web",
        services={"web"},
    )
    assert answer == "done"
    assert [line.split() for line in out.getvalue().splitlines()] == [
        ["-", "web-1", "stopped"],
        ["-", "web-2", "stopped"],
    ]


def test_timing_lines_show_each_phase_shifted_to_when_the_command_began() -> None:
    """``up --timings``: a line per phase, times moved by the offset of the control
    plane's process, unfinished phases said so, marks listed."""
    from corral.cli._progress import timing_lines
    from corral.runtime.timeline import Phase

    lines = timing_lines(
        [
            Phase(name="api", start=1.0, end=1.25),
            Phase(name="instance web-1", start=2.0, end=2.5, marks={"listening": 2.4}),
            Phase(name="instance web-2", start=2.0),
        ],
        offset=0.5,
    )
    assert lines[0].startswith("start-up timings")
    assert lines[1].split() == ["api", "1.500", "→", "1.750", "0.250s"]
    assert lines[2].split()[-2:] == ["(listening", "2.900)"]
    assert "not finished" in lines[3]
