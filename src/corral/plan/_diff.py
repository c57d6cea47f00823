"""What changed between two plans of one system, and what each change needs at run time.
Pure: two Plans in, a PlanDiff out (``corral up --watch`` applies it; see docs/watch.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from corral.plan._model import Plan

__all__ = ["PlanDiff", "diff_plans"]


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[str, ...] = ()
    """New services, in start order: started."""
    removed: tuple[str, ...] = ()
    """Services gone from the manifest, in stop order: stopped."""
    restarted: tuple[str, ...] = ()
    """Services whose command, checks or anything else an instance is spawned with
    changed, besides its configuration: new instances replace the old (a reload)."""
    configured: tuple[str, ...] = ()
    """Services whose configuration (``env``, ``secrets``) changed: a configuration
    rollout (live where the service takes it, else a rolling restart)."""
    rescaled: tuple[tuple[str, int], ...] = ()
    """Services whose replica count changed: scaled."""
    routes: bool = False
    """The gateway's routes or clusters changed: applied live in Envoy."""
    unsupported: tuple[str, ...] = ()
    """Changes that need the whole system restarted (the event bus, the system's name,
    resilience policies, the gateway appearing or going): reported, not applied."""

    def __bool__(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.restarted
            or self.configured
            or self.rescaled
            or self.routes
            or self.unsupported
        )


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """The changes from ``old`` to ``new``."""
    added = tuple(name for name in new.start_order if name not in old.services)
    removed = tuple(name for name in old.stop_order if name not in new.services)
    restarted: list[str] = []
    configured: list[str] = []
    rescaled: list[tuple[str, int]] = []
    for name in new.start_order:
        before, after = old.services.get(name), new.services[name]
        if before is None or before == after:
            continue
        if before.replicas != after.replicas:
            rescaled.append((name, after.replicas))
        if (before.env, before.secrets) != (after.env, after.secrets):
            configured.append(name)
        # The autoscaling policy is read by the control loop, not by instances.
        aligned = dataclasses.replace(
            before,
            replicas=after.replicas,
            env=after.env,
            secrets=after.secrets,
            autoscale=after.autoscale,
        )
        if aligned != after:
            restarted.append(name)
    unsupported = [
        what
        for what, changed in (
            ("the system's name", old.system != new.system),
            ("events (topics, the event bus)", old.events != new.events),
            ("resilience policies", old.resilience != new.resilience),
            ("the PostgreSQL server", old.postgres_admin_url != new.postgres_admin_url),
            ("the gateway's presence", (old.gateway is None) != (new.gateway is None)),
        )
        if changed
    ]
    return PlanDiff(
        added=added,
        removed=removed,
        restarted=tuple(restarted),
        configured=tuple(configured),
        rescaled=tuple(rescaled),
        routes=old.gateway is not None and new.gateway is not None and old.gateway != new.gateway,
        unsupported=tuple(unsupported),
    )
