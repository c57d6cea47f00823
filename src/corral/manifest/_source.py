"""YAML text -> plain data plus a map from key paths to source positions.

ruamel.yaml's round-trip loader records where each key and item came from; we keep
that so any later check (pydantic, cross-references, the plan, Envoy's own validation)
can point at the manifest line that caused it. Pure: text in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from corral.manifest._diagnostics import Diagnostic, KeyPath, ManifestError


@dataclass(frozen=True)
class SourceMap:
    """Positions (0-based line, column) of every key and sequence item, by key path."""

    file: str
    positions: dict[KeyPath, tuple[int, int]]

    def locate(self, path: KeyPath) -> tuple[int, int]:
        """The 1-based position of ``path``, or of its nearest ancestor that exists."""
        probe = tuple(path)
        while probe not in self.positions and probe:
            probe = probe[:-1]
        line, column = self.positions.get(probe, (0, 0))
        return line + 1, column + 1

    def diagnostic(self, path: KeyPath, message: str, hint: str | None = None) -> Diagnostic:
        line, column = self.locate(path)
        return Diagnostic(self.file, line, column, tuple(path), message, hint)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse YAML text into plain dicts/lists/scalars and a :class:`SourceMap`."""
    yaml = YAML(typ="rt", pure=True)
    try:
        node = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0]
            hint = "each key may appear once in a mapping"
        else:
            hint = None
        raise ManifestError([Diagnostic(file, line, column, (), problem, hint)]) from None
    positions: dict[KeyPath, tuple[int, int]] = {(): (0, 0)}
    data = _plain(node, (), positions)
    if data is None:
        raise ManifestError([Diagnostic(file, 1, 1, (), "the manifest is empty")])
    return data, SourceMap(file, positions)


def _plain(node: Any, path: KeyPath, positions: dict[KeyPath, tuple[int, int]]) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            positions[child] = node.lc.key(key)
            out[str(key) if not isinstance(key, str) else key] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            positions[child] = node.lc.item(index)
            items.append(_plain(value, child, positions))
        return items
    if isinstance(node, str):
        return str(node)  # drop ruamel's scalar subclasses
    return node
