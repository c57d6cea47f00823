"""Resolved ``events:`` section (pure). See corral.manifest._events."""

from __future__ import annotations

from dataclasses import dataclass

from corral.manifest import Manifest


@dataclass(frozen=True)
class EventsPlan:
    pass


def resolve_events(manifest: Manifest) -> EventsPlan | None:
    """The resolved section, or None when the manifest has none."""
    if manifest.spec.events is None:
        return None
    return EventsPlan()
