"""The one entry point: a Plan and the chosen targets -> every file, or every problem."""

from __future__ import annotations

from collections.abc import Iterable

from corral.export._compose import render_compose
from corral.export._docker import render_docker
from corral.export._grafana import render_grafana
from corral.export._kubernetes import render_kubernetes
from corral.export._logging import render_logging
from corral.export._model import Export, ExportOptions, Sources, Target
from corral.export._prometheus import render_prometheus
from corral.export._swarm import render_swarm
from corral.plan import Plan


def render(
    plan: Plan,
    targets: Iterable[Target],
    *,
    options: ExportOptions | None = None,
    sources: Sources | None = None,
) -> Export:
    """Render ``targets`` (each into its own folder, named after it). Pure and
    deterministic; raises :class:`ExportError` when a target cannot run the manifest."""
    options = options or ExportOptions()
    sources = sources or Sources()
    parts = []
    chosen = set(targets)
    for target in sorted(chosen, key=list(Target).index):
        if target is Target.DOCKER:
            parts.append(render_docker(plan, options, sources))
        elif target is Target.COMPOSE:
            parts.append(render_compose(plan, options, sources))
        elif target is Target.SWARM:
            parts.append(render_swarm(plan, options, sources))
        elif target is Target.KUBERNETES:
            monitored = Target.PROMETHEUS in chosen
            parts.append(render_kubernetes(plan, options, sources, monitored=monitored))
        elif target is Target.PROMETHEUS:
            parts.append(render_prometheus(plan, options))
        elif target is Target.LOGGING:
            parts.append(render_logging(plan, options))
        else:
            parts.append(render_grafana(plan, options))
    return Export.merge(parts)
