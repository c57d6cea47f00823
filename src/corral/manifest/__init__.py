"""The manifest: Corral's user language (``corral.yaml``), its models and diagnostics.

Pure apart from :func:`load`, which reads one file. Everything downstream (the plan,
renderers, runtime) reads the validated :class:`Manifest`, never raw YAML.
"""

from corral.manifest._diagnostics import Diagnostic, KeyPath, ManifestError, format_path
from corral.manifest._events import EventsSpec
from corral.manifest._gateway import GatewaySpec
from corral.manifest._load import DEFAULT_FILENAME, Manifest, load, parse, resolve_path
from corral.manifest._overlay import overlay_path
from corral.manifest._resilience import ResilienceSpec
from corral.manifest._secrets import SecretRefSpec
from corral.manifest._service import (
    BackoffSpec,
    CheckSpec,
    Condition,
    DatabaseEngine,
    DatabaseSpec,
    ResourcesSpec,
    RestartPolicy,
    RestartSpec,
    ServiceSpec,
)
from corral.manifest._source import SourceMap
from corral.manifest._system import DatabasesSpec, PostgresSpec, SystemSpec
from corral.manifest._types import check_env_name, parse_duration

__all__ = [
    "DEFAULT_FILENAME",
    "BackoffSpec",
    "CheckSpec",
    "Condition",
    "DatabaseEngine",
    "DatabaseSpec",
    "DatabasesSpec",
    "Diagnostic",
    "EventsSpec",
    "GatewaySpec",
    "KeyPath",
    "Manifest",
    "ManifestError",
    "PostgresSpec",
    "ResilienceSpec",
    "ResourcesSpec",
    "RestartPolicy",
    "RestartSpec",
    "SecretRefSpec",
    "ServiceSpec",
    "SourceMap",
    "SystemSpec",
    "check_env_name",
    "format_path",
    "load",
    "overlay_path",
    "parse",
    "parse_duration",
    "resolve_path",
]
