"""Manifest + overlay (as resolved into the Plan) -> each service's configuration layers.

Pure: secret values come in already read, with the function that fingerprints them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from corral.config._model import Secret, ServiceConfig
from corral.manifest import Manifest
from corral.plan import Plan


def manifest_layers(
    manifest: Manifest,
    plan: Plan,
    secret_values: Mapping[str, Mapping[str, str]],
    fingerprint: Callable[[str], str],
) -> dict[str, ServiceConfig]:
    """Every service's base (the Plan's env, each variable with the file:line:col it is
    written at, in the manifest or its overlay) and secrets (reference and fingerprint)."""
    out = {}
    for name, service in plan.services.items():
        sources = {}
        for key in service.env:
            path = ("services", name, "env", key)
            line, column = manifest.source.locate(path)
            sources[key] = f"{Path(manifest.source.file_of(path)).name}:{line}:{column}"
        out[name] = ServiceConfig(
            base=dict(service.env),
            sources=sources,
            secrets={
                key: Secret(ref=str(ref), fingerprint=fingerprint(secret_values[name][key]))
                for key, ref in service.secrets.items()
            },
        )
    return out
