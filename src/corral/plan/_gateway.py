"""Resolved ``gateway:`` section (pure). See corral.manifest._gateway."""

from __future__ import annotations

from dataclasses import dataclass

from corral.manifest import Manifest


@dataclass(frozen=True)
class GatewayPlan:
    pass


def resolve_gateway(manifest: Manifest) -> GatewayPlan | None:
    """The resolved section, or None when the manifest has none."""
    if manifest.spec.gateway is None:
        return None
    return GatewayPlan()
