"""Docker Swarm: the Compose document rewritten for ``docker stack deploy``. Pure.

``swarm/stack.yaml`` holds the same services, components and configs as
``compose/compose.yaml`` (its mounted files are written again under ``swarm/``), changed
where ``docker stack deploy`` reads Compose differently (measured with Docker 20.10):

- ``version: "3.8"`` first and no top-level ``name:`` (the stack's name is the
  ``deploy`` argument): the 20.10 client refuses a file without a version, or with a name;
- ``depends_on`` as a list: conditions are refused (Swarm starts everything at once and
  restarts what fails; the health-gated updates in ``deploy`` remain);
- ``endpoint_mode: dnsrr`` and host-mode ports: virtual IPs and the ingress routing mesh
  need IPVS, which many kernels (this machine's CI) lack; a service's name resolves to
  every task, as Compose's does, and a published port binds on the node itself (on every
  interface: Swarm has no host address for a port);
- no ``build`` or ``restart`` (ignored by Swarm: images are built beforehand, and
  ``deploy.restart_policy`` decides), a job that must not restart gets ``condition: none``;
- ``tmpfs`` as a tmpfs mount, and no ``start_interval`` (API 1.41 ignores it);
- a Python healthcheck's ``timeout`` at least :data:`PYTHON_PROBE_TIMEOUT_S`: Docker's
  timeout covers starting the interpreter, which takes seconds on a loaded node, and in
  Swarm a task that never turns healthy never counts (ridehail's stack did not converge
  at load ~30 with 1-2 s: every check timed out); the probe's own request keeps the
  manifest's timeout.
"""

from __future__ import annotations

import re
from typing import Any

from corral.export._compose import compose_document
from corral.export._model import Export, ExportOptions, Sources
from corral.export._postgres import secret_variables
from corral.export._text import HEADER, to_yaml
from corral.plan import Plan

STACK_FILE = "swarm/stack.yaml"
STACK_VERSION = "3.8"
PYTHON_PROBE_TIMEOUT_S = 10


def _healthcheck(check: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in check.items() if k != "start_interval"}
    test = out.get("test", [])
    if len(test) > 1 and test[0] == "CMD" and test[1] in ("python", "python3"):
        timeout = max(_seconds(str(out.get("timeout", "0s"))), PYTHON_PROBE_TIMEOUT_S)
        out["timeout"] = f"{timeout:g}s"
    return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(duration: str) -> float:
    """A Go duration as the Compose renderer writes it (``1s``, ``500ms``, ``1m30s``)."""
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(duration))


def _port(spec: str) -> dict[str, Any]:
    """``[host:]published:target`` -> the long syntax in host mode."""
    published, target = spec.rsplit(":", 2)[-2:]
    return {"target": int(target), "published": int(published), "protocol": "tcp", "mode": "host"}


def _service(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in ("build", "restart", "tmpfs")}
    if "depends_on" in spec:
        out["depends_on"] = sorted(spec["depends_on"])
    if "healthcheck" in spec:
        out["healthcheck"] = _healthcheck(spec["healthcheck"])
    if "ports" in spec:
        out["ports"] = [_port(p) for p in spec["ports"]]
    if "tmpfs" in spec:
        mounts = [{"type": "tmpfs", "target": target} for target in spec["tmpfs"]]
        out["volumes"] = [*spec.get("volumes", []), *mounts]
    deploy = dict(spec.get("deploy", {}))
    deploy["endpoint_mode"] = "dnsrr"
    if spec.get("restart") == "no" and "restart_policy" not in deploy:
        deploy["restart_policy"] = {"condition": "none"}
    out["deploy"] = dict(sorted(deploy.items()))
    return out


def render_swarm(plan: Plan, options: ExportOptions, sources: Sources) -> Export:
    document, mounted, notes = compose_document(plan, options, sources)
    stack: dict[str, Any] = {
        "version": STACK_VERSION,
        "services": {name: _service(spec) for name, spec in document["services"].items()},
    }
    for key in ("configs", "volumes"):
        if key in document:
            stack[key] = document[key]
    files = {
        f"swarm/{relative.removeprefix('compose/')}": text for relative, text in mounted.items()
    }
    secrets = secret_variables(plan)
    comment = HEADER.format(source=options.source) + (
        "\nBuild the images first (docker compose -f ../compose/compose.yaml build), then from "
        f"this folder: docker stack deploy --resolve-image never -c stack.yaml {plan.system}"
    )
    if secrets:
        comment += "\nSecrets come from the shell: set -a; . ../compose/.env; set +a"
    files[STACK_FILE] = to_yaml([stack], comment=comment)
    return Export(dict(sorted(files.items())), tuple(notes), secrets)
