"""A saved manifest applied to the running system as a diff (``corral up --watch``).

Order, so that no request is routed to a service that is not there: new services start
(dependencies first); then the gateway takes the new routes; then removed services stop;
then changed services are replaced (new instances ready before the old stop) and
rescaled; last, configuration changes roll out through the configuration control
(versioned, live where the service takes them), so runtime values set with
``corral config set`` survive. A service whose new instances cannot start keeps its old
ones; the others go on. An invalid manifest changes nothing: it never gets this far.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from corral.gateway import GatewayAddon
from corral.plan import Plan, PlanDiff, diff_plans
from corral.runtime.errors import StartError
from corral.runtime.orchestrator import Orchestrator

__all__ = ["Applied", "apply_plan"]


@dataclass
class Applied:
    """What applying a plan did, for people (the API answers it)."""

    changed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Services whose new instances did not start, with why (the old ones serve on)."""
    notes: list[str] = field(default_factory=list)
    """Changes a running system cannot take (``corral up`` again)."""


async def apply_plan(
    orchestrator: Orchestrator,
    gateway: GatewayAddon | None,
    old: Plan,
    new: Plan,
    *,
    configure: Callable[[], Awaitable[None]],
) -> tuple[PlanDiff, Applied]:
    """Take the running system from ``old`` to ``new``; ``configure`` rolls out the
    configuration (env, secrets) as the manifest now says."""
    change = diff_plans(old, new)
    done = Applied(
        notes=[f"{what} changed: takes effect at the next corral up" for what in change.unsupported]
    )
    orchestrator.replan(new)
    for name in change.added:
        try:
            await orchestrator.add_service(new.services[name])
            done.changed.append(f"{name}: started")
        except StartError as exc:
            done.failed.append(f"{name}: {exc.details()}")
    if change.routes and gateway is not None and new.gateway is not None:
        gateway.update_plan(new.gateway)
        done.changed.append("gateway: routes updated")
    for name in change.removed:
        await orchestrator.remove_service(name)
        done.changed.append(f"{name}: stopped")
    for name in change.restarted:
        # The configuration stays what the configuration control made it: its rollout
        # below brings the manifest's new values, with the runtime values kept.
        current = orchestrator.service_plan(name)
        service = replace(new.services[name], env=current.env, secrets=current.secrets)
        try:
            await orchestrator.replace(service)
            done.changed.append(f"{name}: replaced")
        except StartError as exc:
            done.failed.append(f"{name}: {exc.details()}")
    for name, replicas in change.rescaled:
        if name in change.restarted:
            continue  # replace() scaled it
        try:
            await orchestrator.scale(name, replicas)
            done.changed.append(f"{name}: scaled to {replicas}")
        except StartError as exc:
            done.failed.append(f"{name}: {exc.details()}")
    if change.configured or change.added:
        await configure()
        done.changed.extend(f"{name}: configuration rolled out" for name in change.configured)
    return change, done
