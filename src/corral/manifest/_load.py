"""Text -> validated :class:`Manifest`, or a :class:`ManifestError` listing every problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from corral.manifest._checks import check_system
from corral.manifest._diagnostics import Diagnostic, ManifestError
from corral.manifest._limits import MAX_MANIFEST_BYTES, too_large
from corral.manifest._overlay import environment_problem, merge_overlay, overlay_path
from corral.manifest._partial import check_partial
from corral.manifest._source import SourceMap, parse_yaml
from corral.manifest._system import SystemSpec
from corral.manifest._translate import translate

DEFAULT_FILENAME = "corral.yaml"


@dataclass(frozen=True)
class Manifest:
    """A validated manifest and where it came from (for locating later problems)."""

    spec: SystemSpec
    source: SourceMap
    path: Path
    """The manifest file; its folder is the system's root."""
    environment: str | None = None
    """The environment whose overlay was merged (``corral up --env``), if any."""
    overlay: Path | None = None
    """That overlay's file (``corral.<environment>.yaml``)."""

    @property
    def root(self) -> Path:
        return self.path.parent

    def diagnostic(
        self, path: tuple[str | int, ...], message: str, hint: str | None = None
    ) -> Diagnostic:
        """A diagnostic pointing at ``path`` in this manifest (for plan and renderer checks)."""
        return self.source.diagnostic(path, message, hint)


def parse(
    text: str,
    path: Path | str = DEFAULT_FILENAME,
    *,
    overlay: tuple[str, Path | str] | None = None,
    environment: str | None = None,
) -> Manifest:
    """Validate manifest text, with an environment overlay's ``(text, path)`` merged over
    it when given (see :mod:`corral.manifest._overlay`). Pure: paths only name the files
    in errors."""
    path = Path(path)
    base = _mapping(text, str(path), allow_empty=False)
    overlay_file = Path(overlay[1]) if overlay is not None else None
    changes = None
    if overlay is not None:
        changes = _mapping(overlay[0], str(overlay_file), allow_empty=True)
    if isinstance(base, ManifestError):
        # Nothing to validate; the overlay's own syntax errors are still worth saying.
        also = changes.diagnostics if isinstance(changes, ManifestError) else ()
        raise ManifestError([*base.diagnostics, *also])
    data, source = base
    problems: list[Diagnostic] = []
    if isinstance(changes, ManifestError):
        problems += changes.diagnostics  # and the manifest is validated alone
    elif changes is not None:
        data, source, problems = merge_overlay(data, source, *changes)
    spec, found = _validate(data, source)
    problems += found
    if spec is None or problems:
        raise ManifestError(problems)
    return Manifest(
        spec=spec, source=source, path=path, environment=environment, overlay=overlay_file
    )


def _mapping(
    text: str, file: str, *, allow_empty: bool
) -> tuple[dict[str, Any], SourceMap] | ManifestError:
    """A file's data and source map, or why it cannot be read (an overlay may be empty)."""
    try:
        data, source = parse_yaml(text, file, allow_empty=allow_empty)
    except ManifestError as exc:
        return exc
    if not isinstance(data, dict):
        what = "an overlay" if allow_empty else "the manifest"
        return ManifestError([Diagnostic(file, 1, 1, (), f"{what} must be a mapping (key: value)")])
    return data, source


def _validate(
    data: dict[str, Any], source: SourceMap
) -> tuple[SystemSpec | None, list[Diagnostic]]:
    """The spec and every problem found: schema errors and, on whatever validated, the
    cross-checks (see :mod:`corral.manifest._partial`)."""
    try:
        spec = SystemSpec.model_validate(data)
    except ValidationError as exc:
        problems = translate(exc, SystemSpec, source)
        # A name that is already wrong (an invalid name) is one mistake, not two.
        seen = {d.path for d in problems}
        problems += [d for d in check_partial(data, source, exc) if d.path not in seen]
        return None, problems
    return spec, check_system(spec, source)


def resolve_path(target: Path | str | None) -> Path:
    """A manifest path from a CLI argument: a file, a folder holding corral.yaml, or cwd."""
    candidate = Path(target) if target else Path()
    if candidate.is_dir():
        candidate = candidate / DEFAULT_FILENAME
    return candidate.absolute()


def load(target: Path | str | None = None, *, environment: str | None = None) -> Manifest:
    """Read and validate a manifest file and, for an ``environment``, its overlay
    ``corral.<environment>.yaml`` next to it (the only I/O in this package)."""
    path = resolve_path(target)
    text = _read(path)
    if not environment:
        return parse(text, path)
    problem = environment_problem(path, environment)
    if problem is not None:
        raise ManifestError([problem])
    overlay = overlay_path(path, environment)
    return parse(text, path, overlay=(_read(overlay), overlay), environment=environment)


def _read(path: Path) -> str:
    """The file's text, read no further than a manifest may be long (a 5 GB file, or
    ``/dev/zero``, is refused at its first MiB)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            message, hint = too_large(MAX_MANIFEST_BYTES + 1, whole=False)
            raise ManifestError([Diagnostic(str(path), 1, 1, (), message, hint)])
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(
            [
                Diagnostic(
                    str(path),
                    1,
                    1,
                    (),
                    "no such manifest file",
                    "run from a folder with corral.yaml or pass its path",
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            [Diagnostic(str(path), 1, 1, (), f"cannot read manifest: {exc}")]
        ) from None
