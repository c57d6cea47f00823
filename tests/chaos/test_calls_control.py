"""The control plane's side of caller-side faults (corral.control's Chaos.calls), on a
fake orchestrator: what is refused (nothing begun), what the feed publishes, and that
stop and expiry take a fault off the feed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.chaos import ChaosError, Refusal
from corral.control._chaos import Chaos
from corral.runtime.errors import UnknownServiceError


class FakeOrchestrator:
    """front (an SDK app) declares calling greeter; shell is a command service."""

    plans = {
        "front": SimpleNamespace(app="front.app:svc", calls=("greeter",)),
        "greeter": SimpleNamespace(app="greeter.app:svc", calls=None),
        "shell": SimpleNamespace(app=None, calls=("greeter",)),
    }

    def service_plan(self, name: str) -> Any:
        try:
            return self.plans[name]
        except KeyError:
            raise UnknownServiceError(f"no service named {name!r}") from None


def chaos(tmp_path: Path) -> Chaos:
    return Chaos(FakeOrchestrator(), None, runs=tmp_path)  # type: ignore[arg-type]


async def begin(c: Chaos, caller: str = "front", target: str = "greeter", **kw: Any) -> Any:
    args: dict[str, Any] = {"percent": 100, "abort_status": 503, "delay_ms": None, "seconds": 30}
    return await c.calls(caller, target, **{**args, **kw})


@pytest.mark.parametrize(
    ("caller", "target", "overrides", "refusal", "words"),
    [
        ("nobody", "greeter", {}, Refusal.UNKNOWN, "no service named 'nobody'"),
        ("front", "nobody", {}, Refusal.UNKNOWN, "no service named 'nobody'"),
        ("greeter", "front", {}, Refusal.INVALID, "greeter does not declare calling front"),
        ("shell", "greeter", {}, Refusal.INVALID, "not a corral.sdk app"),
        ("front", "front", {}, Refusal.INVALID, "calling itself"),
        ("front", "greeter", {"seconds": 7200}, Refusal.INVALID, "between 0 and 3600s"),
        ("front", "greeter", {"abort_status": None}, Refusal.INVALID, "an abort status"),
    ],
)
async def test_bad_faults_are_refused_and_nothing_is_begun(
    tmp_path: Path,
    caller: str,
    target: str,
    overrides: dict[str, Any],
    refusal: Refusal,
    words: str,
) -> None:
    """Each mistake is one refusal naming it; no experiment, nothing on the feed."""
    c = chaos(tmp_path)
    with pytest.raises(ChaosError) as caught:
        await begin(c, caller, target, **overrides)
    assert caught.value.refusal is refusal
    assert words in f"{caught.value.title}: {caught.value.detail}"
    assert c.overview().active == []
    assert c.call_faults() == {"faults": []}


async def test_the_feed_publishes_a_fault_and_stop_lifts_it(tmp_path: Path) -> None:
    """A fault is on the feed of its caller (not another's) with its expiry; a second one
    on the same call is a conflict; stop takes it off and wakes the watchers."""
    c = chaos(tmp_path)
    watch = c.watch_calls("front")
    assert await anext(watch) == {"faults": []}
    experiment = await begin(c, delay_ms=200, percent=40)
    assert (experiment.kind, experiment.caller, experiment.target) == ("calls", "front", "greeter")
    [fault] = (await asyncio.wait_for(anext(watch), 5))["faults"]
    assert {k: fault[k] for k in ("id", "caller", "target", "percent", "delay_ms")} == {
        "id": experiment.id,
        "caller": "front",
        "target": "greeter",
        "percent": 40,
        "delay_ms": 200,
    }
    assert fault["expires_at"] == experiment.expires_at
    assert 0 < fault["remaining"] <= 30
    assert c.call_faults("greeter") == {"faults": []}
    with pytest.raises(ChaosError) as again:
        await begin(c)
    assert again.value.refusal is Refusal.CONFLICT
    stopped = await c.stop(experiment.id)
    assert (stopped.state, stopped.outcome) == ("stopped", "fault lifted")
    assert await asyncio.wait_for(anext(watch), 5) == {"faults": []}
    await watch.aclose()


async def test_expiry_lifts_a_fault_from_the_feed(tmp_path: Path) -> None:
    """A 50 ms fault expires by the control plane's timer and leaves the feed."""
    c = chaos(tmp_path)
    watch = c.watch_calls()
    await anext(watch)
    await begin(c, seconds=0.05)
    assert len((await asyncio.wait_for(anext(watch), 5))["faults"]) == 1
    assert await asyncio.wait_for(anext(watch), 5) == {"faults": []}
    assert c.overview().recent[0].state == "expired"
    await watch.aclose()
