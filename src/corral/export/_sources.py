"""Reading what the renderers need from the system's folder (the only reads of export)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from corral.export._model import Sources
from corral.plan import Plan


def read_requirements(root: Path) -> tuple[str, ...]:
    """The system's dependencies: ``requirements.txt`` (requirement lines; options such
    as ``-r`` are not followed) or else ``pyproject.toml``'s ``[project] dependencies``."""
    listed = root / "requirements.txt"
    if listed.is_file():
        lines = (line.split("#", 1)[0].strip() for line in listed.read_text().splitlines())
        return tuple(line for line in lines if line and not line.startswith("-"))
    project = root / "pyproject.toml"
    if project.is_file():
        data = tomllib.loads(project.read_text())
        return tuple(str(r) for r in data.get("project", {}).get("dependencies", ()))
    return ()


def read_sources(plan: Plan) -> Sources:
    """Requirements and local JWKS files; a file that cannot be read is left out (the
    renderer then reports it against the manifest line that names it)."""
    jwks = {}
    for provider in plan.gateway.providers if plan.gateway else ():
        if provider.jwks_file is not None:
            try:
                jwks[provider.name] = provider.jwks_file.read_text(encoding="utf-8")
            except OSError:
                continue
    return Sources(requirements=read_requirements(plan.root), jwks=jwks)
