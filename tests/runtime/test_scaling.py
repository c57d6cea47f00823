"""Changing a running service: scale up and down, in-place and rolling restarts."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from runtime_helpers import gone, service, wait_until

from corral.runtime.errors import ServiceStoppedError
from corral.runtime.registry import InstanceState

pytestmark = pytest.mark.timeout(30)


def serving(orch, name="web"):
    return [r.instance for r in orch.registry.snapshot().serving(name)]


async def test_scale_up_counts_new_instances_once_ready_and_down_stops_newest(system) -> None:
    """Scaling up adds instances that serve only once ready; scaling down stops the
    newest first, gracefully, and ordinals are never reused."""
    orch, _ = system({"web": service(env={"SVC_READY_AFTER": 0.3})})
    await orch.up()
    scaling = asyncio.create_task(orch.scale("web", 3))
    await wait_until(lambda: orch.registry.snapshot().get("web-3") is not None)
    assert serving(orch) == ["web-1"]  # the new ones are still starting
    await scaling
    assert serving(orch) == ["web-1", "web-2", "web-3"]
    assert orch.status().services["web"].replicas == 3
    pids = {r.instance: r.pid for r in orch.registry.snapshot().instances}
    await orch.scale("web", 1)
    assert [r.instance for r in orch.registry.snapshot().instances] == ["web-1"]
    assert gone(pids["web-2"])
    assert gone(pids["web-3"])
    assert not gone(pids["web-1"])
    await orch.scale("web", 2)
    assert serving(orch) == ["web-1", "web-4"]


async def test_restart_in_place_keeps_ids_and_ports(system) -> None:
    """A plain restart replaces every process but keeps instance ids and ports."""
    orch, _ = system({"web": service(replicas=2)})
    await orch.up()
    before = {r.instance: r for r in orch.registry.snapshot().instances}
    await orch.restart("web")
    after = {r.instance: r for r in orch.registry.snapshot().instances}
    assert set(after) == set(before)
    for name, record in after.items():
        assert record.serving
        assert record.port == before[name].port
        assert record.pid != before[name].pid
        assert gone(before[name].pid)


async def test_rolling_restart_keeps_n_minus_1_ready(system) -> None:
    """A rolling restart replaces instances one at a time: in every registry version seen
    during it at least N-1 instances serve, and each old instance leaves traffic only
    after its replacement serves."""
    orch, _ = system({"web": service(replicas=3, env={"SVC_READY_AFTER": 0.2})})
    await orch.up()
    old = {r.instance: r.pid for r in orch.registry.snapshot().instances}
    snapshots = []

    async def sample() -> None:
        async for snap in orch.registry.watch():
            snapshots.append(snap)

    watcher = asyncio.create_task(sample())
    await asyncio.sleep(0)
    await orch.restart("web", rolling=True)
    await wait_until(
        lambda: snapshots and snapshots[-1].version == orch.registry.snapshot().version
    )
    watcher.cancel()
    assert len(snapshots) > 10  # the watch saw the restart step by step
    assert min(len(snap.serving("web")) for snap in snapshots) >= 2
    for before, after in (("web-1", "web-4"), ("web-2", "web-5"), ("web-3", "web-6")):
        left = next(s for s in snapshots if not ((r := s.get(before)) and r.serving))
        replacement = left.get(after)
        assert replacement is not None
        assert replacement.serving, f"{before} left traffic before {after} was ready"
    assert serving(orch) == ["web-4", "web-5", "web-6"]
    assert all(gone(pid) for pid in old.values())


async def test_stop_service_then_scale_back(system) -> None:
    """stop_service stops every instance; scale brings the service back with new ids."""
    orch, _ = system({"web": service(replicas=2)})
    await orch.up()
    pids = [r.pid for r in orch.registry.snapshot().instances]
    await orch.stop_service("web")
    assert orch.registry.snapshot().of("web") == ()
    assert all(gone(p) for p in pids)
    assert orch.status().services["web"].replicas == 0
    await orch.scale("web", 1)
    assert serving(orch) == ["web-3"]


async def test_scale_replaces_instances_that_exited_for_good(system) -> None:
    """An instance left EXITED (restart never) does not count: scale web=1 replaces it
    and returns with one serving instance."""
    orch, _ = system({"web": service(restart="never")})
    await orch.up()
    os.kill(orch.registry.snapshot().get("web-1").pid, signal.SIGKILL)
    await wait_until(lambda: orch.registry.snapshot().get("web-1").state is InstanceState.EXITED)
    await orch.scale("web", 1)
    assert serving(orch) == ["web-2"]
    assert [r.instance for r in orch.registry.snapshot().instances] == ["web-2"]
    assert orch.status().services["web"].ready == 1


async def test_restart_of_a_stopped_service_is_refused_not_reported_done(system) -> None:
    """Restarting a stopped service raises ServiceStoppedError: it used to return as if
    it had restarted something while nothing ran (a false success)."""
    orch, _ = system({"web": service(replicas=2)})
    await orch.up()
    await orch.stop_service("web")
    for rolling in (False, True):
        with pytest.raises(ServiceStoppedError, match="web is stopped"):
            await orch.restart("web", rolling=rolling)
    assert orch.registry.snapshot().of("web") == ()


async def test_start_brings_a_stopped_service_back_to_its_replicas(system) -> None:
    """start_service after stop_service runs as many instances as before the stop (new
    ids), ready when it returns; on a running service it changes nothing."""
    orch, _ = system({"web": service(replicas=2)})
    await orch.up()
    await orch.scale("web", 3)
    assert await orch.start_service("web") is False  # running: nothing to do
    assert serving(orch) == ["web-1", "web-2", "web-3"]
    await orch.stop_service("web")
    assert await orch.start_service("web") is True
    assert serving(orch) == ["web-4", "web-5", "web-6"]
    assert orch.status().services["web"].replicas == 3


async def test_start_after_scale_to_zero_uses_the_manifest_replicas(system) -> None:
    """A service scaled to 0 starts with the count it had before (here the manifest's)."""
    orch, _ = system({"web": service(replicas=2)})
    await orch.up()
    await orch.scale("web", 0)
    assert await orch.start_service("web") is True
    assert serving(orch) == ["web-3", "web-4"]
