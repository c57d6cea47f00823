"""Experiment file -> :class:`Experiment`, or a :class:`ManifestError` listing every
problem with its file, line and key, exactly as a manifest's problems are reported (the
same YAML reader, bounds and translation of pydantic's errors)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from corral.chaos._model import Experiment
from corral.manifest import Diagnostic, ManifestError, parse_yaml, translate

MAX_EXPERIMENT_BYTES = 256 * 1024
"""An experiment is a page of YAML; a larger file is a mistake (or not one)."""


def parse(text: str, path: Path | str) -> Experiment:
    """Validate an experiment's text; ``path`` only names the file in errors."""
    file = str(path)
    if not text.strip():
        raise ManifestError([Diagnostic(file, 1, 1, (), "the experiment is empty")])
    data, source = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise ManifestError(
            [Diagnostic(file, 1, 1, (), "an experiment must be a mapping (key: value)")]
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(translate(exc, Experiment, source)) from None


def load(path: Path | str) -> Experiment:
    """Read and validate one experiment file."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_EXPERIMENT_BYTES + 1)
    except OSError as exc:
        raise ManifestError(
            [Diagnostic(str(path), 1, 1, (), f"cannot read the experiment: {exc.strerror}")]
        ) from None
    if len(raw) > MAX_EXPERIMENT_BYTES:
        message = f"the experiment is over {MAX_EXPERIMENT_BYTES // 1024} KiB"
        raise ManifestError([Diagnostic(str(path), 1, 1, (), message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"the experiment is not UTF-8 text (byte {exc.start})"
        raise ManifestError([Diagnostic(str(path), 1, 1, (), message)]) from None
    return parse(text, path)
