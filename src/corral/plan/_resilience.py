"""Resolved ``resilience:`` section (pure). See corral.manifest._resilience."""

from __future__ import annotations

from dataclasses import dataclass

from corral.manifest import Manifest


@dataclass(frozen=True)
class ResiliencePlan:
    pass


def resolve_resilience(manifest: Manifest) -> ResiliencePlan | None:
    """The resolved section, or None when the manifest has none."""
    if manifest.spec.resilience is None:
        return None
    return ResiliencePlan()
