"""Which services a changed file belongs to. Pure: paths in, service names out.

A service's sources are, in order of precedence:

1. its ``watch:`` patterns (gitignore syntax, relative to its workdir);
2. for an ``app:`` service, the top-level package (or module file) of its app module,
   found in its workdir: ``app: greeter.app:svc`` watches ``<workdir>/greeter/``;
3. its workdir, when it is not the manifest's folder (a service in its own folder).

A ``command:`` service in the manifest's folder without ``watch:`` is not watched: every
file there would restart it. The manifest (and its overlay) is watched on its own; the
state directory (``.corral``) never is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

from corral.plan import Plan, ServicePlan

__all__ = ["Changes", "SourceMap"]


@dataclass(frozen=True)
class Changes:
    """What one batch of changed files asks for."""

    services: tuple[str, ...]
    """Services whose sources changed, in start order (dependencies first)."""
    manifest: bool
    """The manifest or its overlay changed."""
    files: Mapping[str, tuple[Path, ...]]
    """The changed files per service (for the terminal)."""

    def __bool__(self) -> bool:
        return bool(self.services) or self.manifest


@dataclass(frozen=True)
class _Sources:
    base: Path
    roots: tuple[Path, ...]
    """Files or folders whose every file counts (no patterns), or, with patterns, the
    folders to watch for them."""
    patterns: pathspec.PathSpec[Any] | None


class SourceMap:
    """The sources of every service of ``plan``; ``manifests`` are the files the
    system's definition is read from."""

    def __init__(self, plan: Plan, manifests: Iterable[Path]) -> None:
        self._plan = plan
        self.manifests = frozenset(path.resolve() for path in manifests)
        self._state_dir = plan.state_dir.resolve()
        self._services = {
            name: _sources(plan.root.resolve(), service) for name, service in plan.services.items()
        }

    @property
    def roots(self) -> tuple[Path, ...]:
        """The folders to watch: every service's base or roots, and the manifest's folder
        (for the manifest itself); a folder inside another is covered by it."""
        folders = {path.parent for path in self.manifests}
        for sources in self._services.values():
            folders.update(root if root.suffix != ".py" else root.parent for root in sources.roots)
        ordered = sorted(folders, key=lambda p: len(p.parts))
        kept: list[Path] = []
        for folder in ordered:
            if not any(folder.is_relative_to(outer) for outer in kept):
                kept.append(folder)
        return tuple(kept)

    def services_of(self, path: Path) -> tuple[str, ...]:
        """The services ``path`` is a source of (sorted)."""
        path = path.resolve()
        if path.is_relative_to(self._state_dir) or "__pycache__" in path.parts:
            return ()
        return tuple(
            sorted(name for name, sources in self._services.items() if _owns(sources, path))
        )

    def changes(self, paths: Iterable[Path]) -> Changes:
        """What a batch of changed ``paths`` asks for: each service once, however many
        of its files changed (a git checkout of a thousand files is one reload)."""
        files: dict[str, list[Path]] = {}
        manifest = False
        for path in paths:
            if path.resolve() in self.manifests:
                manifest = True
                continue
            for name in self.services_of(path):
                files.setdefault(name, []).append(path)
        services = tuple(name for name in self._plan.start_order if name in files)
        return Changes(
            services=services,
            manifest=manifest,
            files={name: tuple(sorted(files[name])) for name in services},
        )


def _sources(root: Path, service: ServicePlan) -> _Sources:
    base = service.workdir.resolve()
    if service.watch is not None:
        spec = pathspec.GitIgnoreSpec.from_lines(service.watch)
        folders = {base} | _pattern_folders(base, service.watch)
        return _Sources(base=base, roots=tuple(sorted(folders)), patterns=spec)
    if service.app is not None:
        top = service.app.split(":", 1)[0].split(".", 1)[0]
        package, module = base / top, base / f"{top}.py"
        # Not on disk (yet, or installed elsewhere): the package is where it would be.
        found = module if module.is_file() and not package.is_dir() else package
        return _Sources(base=base, roots=(found,), patterns=None)
    if base != root:
        return _Sources(base=base, roots=(base,), patterns=None)
    return _Sources(base=base, roots=(), patterns=None)


def _owns(sources: _Sources, path: Path) -> bool:
    if sources.patterns is not None:
        # Patterns may reach out of the workdir (../shared/**/*.py): relpath says "..".
        return sources.patterns.match_file(Path(os.path.relpath(path, sources.base)).as_posix())
    return any(path == root or path.is_relative_to(root) for root in sources.roots)


def _pattern_folders(base: Path, patterns: Iterable[str]) -> set[Path]:
    """The folders patterns that leave the workdir reach into (``../shared/*.py``:
    ``<workdir>/../shared``), which watching the workdir would not see."""
    folders = set()
    for pattern in patterns:
        parts = Path(pattern.removeprefix("!")).parts
        if ".." not in parts:
            continue
        literal = []
        for part in parts[:-1]:
            if any(char in part for char in "*?["):
                break
            literal.append(part)
        folders.add(Path(os.path.normpath(base.joinpath(*literal))))
    return folders
