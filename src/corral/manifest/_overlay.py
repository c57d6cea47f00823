"""Environment overlays: ``corral.<env>.yaml`` merged over ``corral.yaml`` before validation.

``corral up --env prod`` (or ``CORRAL_ENV=prod``) reads ``corral.prod.yaml`` next to the
manifest and merges it, key path by key path, over the manifest's own data:

- a mapping merges key by key, recursively (``services.web.env.LEVEL`` changes one
  variable and keeps the others);
- any other value (a scalar, a list) replaces the base's whole: a list's items have no
  identity but their index, so ``gateway.routes`` or ``command`` are restated entirely;
- ``null`` removes the key from the base (``env: {DEBUG: null}``, ``port: null``);
- an overlay changes the services the manifest defines and adds none: a name the
  manifest lacks is far more often a typo than a new service, and would start a
  half-defined one.

The merged data goes through the same models and checks as a manifest alone. Its
:class:`SourceMap` points every path the overlay set into the overlay file, so an unknown
key or a bad value there is reported at the overlay's own file, line and column. Pure,
except :func:`environment_problem`, which looks for the overlay file (for ``load``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from corral.manifest._diagnostics import Diagnostic, KeyPath, shown
from corral.manifest._references import closest_hint
from corral.manifest._source import SourceMap

_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")


def overlay_path(manifest: Path, environment: str) -> Path:
    """``corral.yaml`` and ``prod`` -> ``corral.prod.yaml`` in the same folder."""
    return manifest.with_name(f"{manifest.stem}.{environment}{manifest.suffix}")


def environment_problem(manifest: Path, environment: str) -> Diagnostic | None:
    """Why ``environment`` cannot name an overlay of ``manifest`` (bad name, no file)."""
    if not _ENVIRONMENT.match(environment):
        return Diagnostic(
            str(manifest),
            1,
            1,
            (),
            f"invalid environment name {shown(environment)}",
            "lower-case letters, digits, '-' and '_', e.g. prod or staging",
        )
    path = overlay_path(manifest, environment)
    if path.is_file():
        return None
    found = sorted(
        candidate.name.removeprefix(f"{manifest.stem}.").removesuffix(manifest.suffix)
        for candidate in manifest.parent.glob(f"{manifest.stem}.*{manifest.suffix}")
    )
    hint = (
        f"environments next to {manifest.name}: {', '.join(found)}"
        if found
        else f"create {path.name} next to {manifest.name}"
    )
    return Diagnostic(str(path), 1, 1, (), f"no overlay for environment {environment!r}", hint)


def merge_overlay(
    base: dict[str, Any], base_source: SourceMap, overlay: dict[str, Any], overlay_source: SourceMap
) -> tuple[dict[str, Any], SourceMap, list[Diagnostic]]:
    """The base with the overlay merged over it, its source map, and the overlay's
    problems found while merging (services the base does not define)."""
    problems: list[Diagnostic] = []
    overlay = dict(overlay)
    services = overlay.get("services")
    known = base.get("services")
    if isinstance(services, dict) and isinstance(known, dict):
        kept = {}
        for name, spec in services.items():
            if name in known:
                kept[name] = spec
                continue
            hint = closest_hint(name, known, f"add new services to {Path(base_source.file).name}")
            problems.append(
                overlay_source.diagnostic(
                    ("services", name),
                    f"the overlay changes service {shown(name)}, which "
                    f"{Path(base_source.file).name} does not define",
                    hint,
                )
            )
        overlay["services"] = kept
    replaced: set[KeyPath] = set()
    removed: set[KeyPath] = set()
    merged = _merge(base, overlay, (), replaced, removed)
    source = _merged_source(base_source, overlay_source, replaced, removed)
    return merged, source, problems


def _merge(
    base: dict[str, Any],
    overlay: dict[str, Any],
    path: KeyPath,
    replaced: set[KeyPath],
    removed: set[KeyPath],
) -> dict[str, Any]:
    """``overlay`` over ``base``, noting each path the overlay set and each it removed."""
    out = dict(base)
    for key, value in overlay.items():
        child = (*path, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # Merged: the key keeps its place in the base (a missing key inside is the
            # base mapping's problem); what the overlay sets inside points into it.
            out[key] = _merge(out[key], value, child, replaced, removed)
            continue
        if value is None:
            out.pop(key, None)
            removed.add(child)
        else:
            out[key] = value
            replaced.add(child)
    return out


def _merged_source(
    base: SourceMap, overlay: SourceMap, replaced: set[KeyPath], removed: set[KeyPath]
) -> SourceMap:
    """Positions of the merged data: the base's, except under a path the overlay removed
    (none) or set (the overlay's, in its file). One walk of each file's positions,
    whatever the number of keys the overlay sets (it was one per key: quadratic)."""

    def under(path: KeyPath, roots: set[KeyPath]) -> bool:
        return any(path[:depth] in roots for depth in range(1, len(path) + 1))

    gone = replaced | removed
    positions = {path: at for path, at in base.positions.items() if not under(path, gone)}
    files = {path: file for path, file in base.files.items() if not under(path, gone)}
    for path, at in overlay.positions.items():
        if under(path, replaced):
            positions[path] = at
            files[path] = overlay.file
    return SourceMap(base.file, positions, files)
