"""``corral export``: the same manifest as Dockerfiles, Compose, Kubernetes, Prometheus and
Grafana files, and a log collector's configuration (``logging``).

- pure renderers (:func:`render`, :func:`render_dockerfile`): Plan + options + sources ->
  files as text, deterministic and sorted; a manifest a target cannot run is an
  :class:`ExportError` naming the manifest key;
- :func:`read_sources` reads what they need first (requirements, local JWKS files);
- :func:`write_export` delivers the result and never overwrites a file it did not write.

See docs/export.md.
"""

from corral.export._docker import (
    container_command,
    render_dockerfile,
    render_dockerignore,
    render_requirements,
)
from corral.export._logging import render_logging
from corral.export._model import (
    Export,
    ExportError,
    ExportOptions,
    Images,
    Note,
    Problem,
    Sources,
    Target,
)
from corral.export._render import render
from corral.export._sources import read_sources
from corral.export._text import source_name
from corral.export._writer import MARKER, Conflict, OverwriteError, WriteReport, write_export

__all__ = [
    "MARKER",
    "Conflict",
    "Export",
    "ExportError",
    "ExportOptions",
    "Images",
    "Note",
    "OverwriteError",
    "Problem",
    "Sources",
    "Target",
    "WriteReport",
    "container_command",
    "read_sources",
    "render",
    "render_dockerfile",
    "render_dockerignore",
    "render_logging",
    "render_requirements",
    "source_name",
    "write_export",
]
