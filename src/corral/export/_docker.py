"""One Dockerfile per service (and its .dockerignore), plus the shared requirements. Pure.

The image runs the service as the manifest says (``python -m corral.sdk.serve
module:attr`` or the command) from a copy of the system's folder, as a non-root user,
with the readiness check as HEALTHCHECK (in the image's own Python: no curl). Stages keep
the dependency layer cached until requirements.txt changes, and keep the export folder
(and a wheelhouse) out of the final image:

1. ``dependencies``: a virtualenv with requirements.txt installed, from the package index
   or, offline, from a wheelhouse built on the host (``--no-index --find-links``);
2. ``source``: the system's folder minus the export folder;
3. the image: both copied onto the base, nothing else.

Only the SDK is installed (``corral`` without the ``local`` extra): a service image
never holds Envoy, nats-server or the control plane.
"""

from __future__ import annotations

import json

from corral.export._components import (
    ENVOY,
    NATS,
    component_dockerfile_path,
    render_component_dockerfile,
)
from corral.export._environment import runs_nats
from corral.export._mapping import healthcheck
from corral.export._model import (
    APP_DIR,
    CONTAINER_PORT,
    DATA_DIR,
    SERVICE_UID,
    Export,
    ExportError,
    ExportOptions,
    Problem,
    Sources,
    Target,
)
from corral.export._text import HEADER
from corral.plan import SERVE_MODULE, Plan, ServicePlan

VENV = "/opt/venv"
_STATE_AND_TOOLS = (
    ".git",
    ".corral",
    ".venv",
    "**/__pycache__",
    "**/*.py[cod]",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)


def requirements_path(context: str) -> str:
    return f"{context}/docker/requirements.txt"


def dockerfile_path(context: str, service: str) -> str:
    """Relative to the system's folder (the build context)."""
    return f"{context}/docker/{service}.Dockerfile"


def container_command(service: ServicePlan, *, python: str = "python") -> list[str]:
    """What the container runs: the SDK's server for an app, else the manifest's command."""
    if service.app is not None:
        return [python, "-m", SERVE_MODULE, service.app]
    return list(service.argv)


def workdir_in_image(plan: Plan, service: ServicePlan) -> str:
    relative = service.workdir.relative_to(plan.root).as_posix()
    return APP_DIR if relative == "." else f"{APP_DIR}/{relative}"


def render_dockerfile(
    plan: Plan,
    service: str,
    *,
    base_image: str,
    wheelhouse: str | None = None,
    context: str = "deploy",
    python: str = "python3",
    source: str = "corral.yaml",
) -> str:
    """The Dockerfile of one service, for ``base_image`` (any image with ``python3``
    able to make a venv: Debian's and Ubuntu's python3 packages give no ``python``);
    ``wheelhouse`` (relative to the build context, the system's folder) installs the
    dependencies without a package index."""
    spec = plan.services[service]
    run = [
        f"{python} -m venv {VENV}",
        f"{VENV}/bin/python -m pip install --no-cache-dir --disable-pip-version-check"
        + (" --no-index --find-links=/tmp/wheels" if wheelhouse else "")
        + " -r /tmp/requirements.txt",
    ]
    lines = [
        f"# {HEADER.format(source=source)}",
        f"# Service {service!r} of system {plan.system!r}; build from the system's folder:",
        f"#   docker build -f {dockerfile_path(context, service)} -t {plan.system}-{service} .",
        f"FROM {base_image} AS base",
        "ENV PYTHONDONTWRITEBYTECODE=1 \\",
        "    PYTHONUNBUFFERED=1",
        "",
        "# Dependencies first: this stage is rebuilt only when requirements.txt changes.",
        "FROM base AS dependencies",
        f"COPY {requirements_path(context)} /tmp/requirements.txt",
    ]
    if wheelhouse:
        lines.append(f"COPY {wheelhouse.rstrip('/')}/ /tmp/wheels/")
    lines += [
        "RUN " + " \\\n    && ".join(run),
        "",
        "# The system's folder, without the export folder and the wheelhouse.",
        "FROM base AS source",
        f"COPY . {APP_DIR}",
        "RUN rm -rf " + " ".join(f"{APP_DIR}/{p}" for p in _left_out(context, wheelhouse)),
        "",
        "FROM base",
        "# The service's own user; a volume mounted on /data (a SQLite file) starts out its.",
        f"RUN groupadd --system --gid {SERVICE_UID} corral \\",
        f"    && useradd --system --uid {SERVICE_UID} --gid corral --no-create-home \\",
        "       --home-dir /nonexistent --shell /usr/sbin/nologin corral \\",
        f"    && mkdir {DATA_DIR} && chown corral:corral {DATA_DIR}",
        f"COPY --from=dependencies {VENV} {VENV}",
        f"COPY --from=source {APP_DIR} {APP_DIR}",
        f"ENV PATH={VENV}/bin:$PATH \\",
        "    HOST=0.0.0.0 \\",
        f"    PORT={CONTAINER_PORT} \\",
        f"    CORRAL_SYSTEM={plan.system} \\",
        f"    CORRAL_SERVICE={service}",
        f"WORKDIR {workdir_in_image(plan, spec)}",
        f"USER {SERVICE_UID}:{SERVICE_UID}",
        f"EXPOSE {CONTAINER_PORT}",
        "STOPSIGNAL SIGTERM",
    ]
    if spec.readiness is not None:
        check = healthcheck(spec.readiness, spec.startup)
        flags = [
            f"--interval={check['interval']}",
            f"--timeout={check['timeout']}",
            f"--start-period={check['start_period']}",
        ]
        # No --start-interval: Docker 25+ only; podman/buildah 4.x refuse the whole file.
        flags.append(f"--retries={check['retries']}")
        lines.append(f"HEALTHCHECK {' '.join(flags)} \\")
        lines.append(f"    CMD {json.dumps(check['test'][1:])}")
    lines.append(f"CMD {json.dumps(container_command(spec))}")
    return "\n".join(lines) + "\n"


def _left_out(context: str, wheelhouse: str | None) -> list[str]:
    """The export folder, and the wheelhouse unless it is inside it."""
    out = [context.rstrip("/")]
    if wheelhouse and not f"{wheelhouse.rstrip('/')}/".startswith(f"{out[0]}/"):
        out.append(wheelhouse.rstrip("/"))
    return out


def render_dockerignore(
    *, context: str, wheelhouse: str | None = None, source: str = "corral.yaml"
) -> str:
    """What the build context leaves out: state, caches, and the export folder except
    what the build reads from it (requirements.txt, a wheelhouse)."""
    lines = [f"# {HEADER.format(source=source)}", *_STATE_AND_TOOLS, context]
    lines.append(f"!{requirements_path(context)}")
    if wheelhouse:
        lines.append(f"!{wheelhouse.rstrip('/')}")
    return "\n".join(lines) + "\n"


def render_requirements(sources: Sources, options: ExportOptions) -> str:
    """The SDK at the exporting version, then the system's own dependencies (sorted)."""
    own = sorted({r for r in sources.requirements if _name(r) != "corral"})
    lines = [f"# {HEADER.format(source=options.source)}", options.sdk_requirement, *own]
    return "\n".join(lines) + "\n"


def _name(requirement: str) -> str:
    for stop in "<>=!~[; @":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def render_docker(plan: Plan, options: ExportOptions, sources: Sources) -> Export:
    problems = [
        Problem(
            ("services", name, "workdir"),
            f"workdir {spec.workdir} is outside the system's folder, which is the images' "
            "build context",
            "keep a service's workdir inside the folder of corral.yaml",
        )
        for name, spec in sorted(plan.services.items())
        if not spec.workdir.is_relative_to(plan.root)
    ]
    if problems:
        raise ExportError(Target.DOCKER, problems)
    files = {"docker/requirements.txt": render_requirements(sources, options)}
    ignore = render_dockerignore(
        context=options.context, wheelhouse=options.wheelhouse, source=options.source
    )
    for name in sorted(plan.services):
        files[f"docker/{name}.Dockerfile"] = render_dockerfile(
            plan,
            name,
            base_image=options.python_image,
            wheelhouse=options.wheelhouse,
            context=options.context,
            source=options.source,
        )
        files[f"docker/{name}.Dockerfile.dockerignore"] = ignore
    used = {ENVOY: plan.gateway is not None, NATS: runs_nats(plan)}
    for name, requirement in sorted(options.local_components.items()):
        if not used.get(name, False):
            continue
        assert options.wheelhouse is not None  # options.problems() says so first
        path = component_dockerfile_path(options.context, name).removeprefix(f"{options.context}/")
        files[path] = render_component_dockerfile(
            name,
            requirement,
            base_image=options.python_image,
            wheelhouse=options.wheelhouse,
            context=options.context,
            source=options.source,
        )
        files[f"{path}.dockerignore"] = ignore
    return Export(dict(sorted(files.items())))
