"""The export's vocabulary: targets, options, what is read from disk first, and the result.

Renderers are pure: ``Plan`` + :class:`ExportOptions` + :class:`Sources` in, an
:class:`Export` (relative path -> file text, plus notes) out. Reading the inputs and
writing the files are separate, thin steps (``_sources.py``, ``_writer.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from corral.errors import CorralError
from corral.manifest import KeyPath, format_path


class Target(StrEnum):
    DOCKER = "docker"
    COMPOSE = "compose"
    SWARM = "swarm"
    KUBERNETES = "kubernetes"
    PROMETHEUS = "prometheus"
    GRAFANA = "grafana"
    LOGGING = "logging"


CONTAINER_PORT = 8000
"""Every service listens on this port in its container (PORT); discovery is by DNS name, so
the port is the same for all (``CORRAL_DISCOVERY=dns:8000`` in Compose)."""
GATEWAY_PORT = 8080
"""The gateway's listener in its container."""
GATEWAY_STATS_PORT = 9901
"""Envoy's readiness and Prometheus stats (never the admin API, which stays on a socket)."""
NATS_PORT = 4222
NATS_MONITOR_PORT = 8222
NATS_EXPORTER_PORT = 7777
APP_DIR = "/app"
"""Where the system's folder is copied in a service image."""
DATA_DIR = "/data"
"""Where a SQLite service's volume is mounted."""
SERVICE_UID = 10001
"""The non-root user services run as (set in the image and in the pod's securityContext)."""


@dataclass(frozen=True)
class Images:
    """Third-party images the export runs (pinned, never ``latest``)."""

    python: str = "python:3.12-slim"
    envoy: str = "envoyproxy/envoy:distroless-v1.40.0"
    nats: str = "nats:2.15-alpine"
    nats_exporter: str = "natsio/prometheus-nats-exporter:0.17.3"
    postgres: str = "postgres:16-alpine"


@dataclass(frozen=True)
class ExportOptions:
    registry: str = ""
    """Prefix of the services' image names (``ghcr.io/acme``); empty: local names only."""
    tag: str = "latest"
    namespace: str | None = None
    """Kubernetes namespace; the system's name when None."""
    base_image: str | None = None
    """Base image of the service images; :attr:`Images.python` when None."""
    wheelhouse: str | None = None
    """Folder of wheels, relative to the system's folder, to install from without an index."""
    context: str = "deploy"
    """The output folder relative to the system's folder (the images' build context)."""
    sdk_requirement: str = "corral"
    """How the images ask for the SDK (the exporting version, e.g. ``corral==0.1.0``)."""
    source: str = "corral.yaml"
    """The manifest's file name, for the header of every generated file."""
    volume_size: str = "1Gi"
    """Size of each persistent volume claim (SQLite services, NATS) on Kubernetes."""
    servicemonitor: bool = False
    """Kubernetes: also Prometheus Operator ServiceMonitors for every scraped pod."""
    gateway_api: str | None = None
    """Kubernetes: ``[namespace/]name`` of a Gateway API Gateway to attach the gateway's
    routes to (HTTPRoutes); None: none."""
    images: Images = field(default_factory=Images)
    local_components: Mapping[str, str] = field(default_factory=dict)
    """Compose and Swarm: component (``envoy``, ``nats``) -> the wheel requirement its
    image is built from locally (``_components.py``; needs :attr:`wheelhouse`); the
    upstream image for the others."""

    def image(self, system: str, service: str) -> str:
        """``<registry>/<system>-<service>:<tag>``."""
        prefix = self.registry.rstrip("/") + "/" if self.registry else ""
        return f"{prefix}{system}-{service}:{self.tag}"

    def namespace_of(self, system: str) -> str:
        return self.namespace or system

    @property
    def python_image(self) -> str:
        return self.base_image or self.images.python

    def problems(self) -> list[str]:
        """What the platforms would reject later, said now (each names its option)."""
        out = []
        if self.namespace is not None and not _DNS_LABEL.match(self.namespace):
            out.append(
                f"--namespace {self.namespace!r}: lower-case letters, digits and '-', at most "
                "63, starting and ending with a letter or digit"
            )
        if not _TAG.match(self.tag):
            out.append(f"--tag {self.tag!r}: letters, digits, '_', '.' and '-', at most 128")
        if self.registry and not _REGISTRY.match(self.registry):
            out.append(f"--registry {self.registry!r}: a lower-case image name prefix (host/path)")
        if not _QUANTITY.match(self.volume_size):
            out.append(f"--volume-size {self.volume_size!r}: a size such as 1Gi or 500Mi")
        if self.local_components and self.wheelhouse is None:
            out.append("local envoy and nats images install their wheels from a wheelhouse")
        if self.gateway_api is not None and not _GATEWAY_REF.match(self.gateway_api):
            out.append(
                f"--gateway-api {self.gateway_api!r}: a Gateway's name, or namespace/name "
                "(lower-case letters, digits, '-' and '.')"
            )
        return out


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REGISTRY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*/?$")
_GATEWAY_REF = re.compile(
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
)
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclass(frozen=True)
class Sources:
    """What the renderers need from disk, read before rendering (see ``_sources.py``)."""

    requirements: tuple[str, ...] = ()
    """The system's own dependencies (its requirements.txt or pyproject.toml)."""
    jwks: Mapping[str, str] = field(default_factory=dict)
    """JWT provider -> its local JWKS document (``jwks: {file: ...}`` providers)."""


@dataclass(frozen=True)
class Note:
    """Something the target cannot express exactly, and what the export did instead."""

    path: KeyPath
    message: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}"


@dataclass(frozen=True)
class Export:
    files: Mapping[str, str]
    """Relative path (``/``-separated) -> text, sorted by path."""
    notes: tuple[Note, ...] = ()
    secrets: tuple[str, ...] = ()
    """Variables the Compose files read from ``compose/.env`` (generated once, never
    rendered: a render is deterministic and a secret is not)."""

    @staticmethod
    def merge(parts: Iterable[Export]) -> Export:
        files: dict[str, str] = {}
        notes: list[Note] = []
        secrets: set[str] = set()
        for part in parts:
            files.update(part.files)
            notes.extend(n for n in part.notes if n not in notes)
            secrets.update(part.secrets)
        return Export(dict(sorted(files.items())), tuple(notes), tuple(sorted(secrets)))


@dataclass(frozen=True)
class Problem:
    """A manifest the target cannot run as written (the CLI points at its line)."""

    path: KeyPath
    message: str
    hint: str | None = None


class ExportError(CorralError):
    """The plan cannot be exported to a target; ``problems`` lists every reason."""

    def __init__(self, target: Target, problems: Iterable[Problem]) -> None:
        self.target = target
        self.problems = tuple(problems)
        super().__init__(
            f"cannot export to {target}: " + "; ".join(p.message for p in self.problems)
        )
