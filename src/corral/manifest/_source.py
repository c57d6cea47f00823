"""YAML text -> plain data plus a map from key paths to source positions.

ruamel.yaml's round-trip loader records where each key and item came from; we keep
that so any later check (pydantic, cross-references, the plan, Envoy's own validation)
can point at the manifest line that caused it. Pure: text in, data out.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLFutureWarning, YAMLWarning
from ruamel.yaml.reader import ReaderError

from corral.manifest._diagnostics import Diagnostic, KeyPath, ManifestError, shown
from corral.manifest._limits import MAX_MANIFEST_BYTES, Refused, bounded, too_large


@dataclass(frozen=True)
class SourceMap:
    """Positions (0-based line, column) of every key and sequence item, by key path.

    ``files`` names another file for the paths an environment overlay set (see
    :mod:`corral.manifest._overlay`); every other path is in ``file``.
    """

    file: str
    positions: dict[KeyPath, tuple[int, int]]
    files: dict[KeyPath, str] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[int, int]:
        """The 1-based position of ``path``, or of its nearest ancestor that exists."""
        line, column = self.positions.get(self._nearest(path), (0, 0))
        return line + 1, column + 1

    def file_of(self, path: KeyPath) -> str:
        """The file ``path`` (or its nearest ancestor that exists) was written in."""
        return self.files.get(self._nearest(path), self.file)

    def diagnostic(
        self, path: KeyPath, message: str, hint: str | None = None, *, rule: str | None = None
    ) -> Diagnostic:
        line, column = self.locate(path)
        return Diagnostic(self.file_of(path), line, column, tuple(path), message, hint, rule)

    def _nearest(self, path: KeyPath) -> KeyPath:
        probe = tuple(path)
        while probe not in self.positions and probe:
            probe = probe[:-1]
        return probe


def parse_yaml(text: str, file: str, *, allow_empty: bool = False) -> tuple[Any, SourceMap]:
    """Parse YAML text into plain dicts/lists/scalars and a :class:`SourceMap`.

    ``allow_empty``: an empty document (or only comments) is an empty mapping, as an
    environment overlay that changes nothing may be; a manifest may not be empty.
    Bounded in size, nesting and alias expansion (see :mod:`corral.manifest._limits`)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MANIFEST_BYTES:
        message, hint = too_large(size, whole=True)
        raise ManifestError([Diagnostic(file, 1, 1, (), message, hint)])
    if (version := _unknown_version(text, file)) is not None:
        raise ManifestError([version])
    try:
        with warnings.catch_warnings():
            # ruamel.yaml warns about YAML 1.1 spellings on stderr; the checks that
            # follow say what matters about the value, at its line.
            warnings.simplefilter("ignore", YAMLWarning)
            warnings.simplefilter("ignore", YAMLFutureWarning)
            node = _yaml().load(text)
    except MarkedYAMLError as exc:
        raise ManifestError([_syntax_diagnostic(exc, text, file)]) from None
    except ReaderError as exc:  # a character YAML does not allow: it has no mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        message = f"the character {shown(chr(exc.character))} cannot appear in YAML"
        raise ManifestError([Diagnostic(file, line, column, (), message)]) from None
    except Refused as exc:
        raise ManifestError([exc.diagnostic(file)]) from None
    positions: dict[KeyPath, tuple[int, int]] = {(): (0, 0)}
    data = _plain(node, (), positions)
    if data is None:
        if allow_empty:
            return {}, SourceMap(file, positions)
        raise ManifestError([Diagnostic(file, 1, 1, (), "the manifest is empty")])
    return data, SourceMap(file, positions)


_VERSION = re.compile(r"^%YAML[ \t]+1\.(\d+)", re.MULTILINE)


def _unknown_version(text: str, file: str) -> Diagnostic | None:
    """A ``%YAML 1.x`` directive ruamel.yaml cannot read (it fails an assert on them)."""
    for match in _VERSION.finditer(text):
        if match.group(1) not in ("1", "2"):
            line = text.count("\n", 0, match.start()) + 1
            return Diagnostic(
                file,
                line,
                1,
                (),
                f"YAML version {shown(match.group(0).split()[-1])} is unknown",
                "write %YAML 1.2, or no %YAML line at all",
            )
    return None


def _yaml() -> YAML:
    """The round-trip loader (it keeps positions), with Corral's bounds."""
    return bounded(YAML(typ="rt", pure=True))


_DUPLICATE = re.compile(r'found duplicate key "(.*?)" with value')


def _syntax_diagnostic(exc: MarkedYAMLError, text: str, file: str) -> Diagnostic:
    """A YAML syntax error, phrased for a person: where it is and what it was inside."""
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    path: KeyPath = ()
    hint: str | None = None
    if (duplicate := _DUPLICATE.match(problem)) is not None:
        key = duplicate.group(1)
        problem = f"duplicate key {shown(key)}"
        hint = "each key may appear once in a mapping"
        if exc.context_mark is not None:
            start = (exc.context_mark.line, exc.context_mark.column)
            path, first = _duplicate_key(text, key, start)
            if first is not None:
                hint = f"{shown(key)} is already set at line {first + 1}; each key may appear once"
    elif "'\\t'" in problem:
        problem = "a tab cannot indent YAML"
        hint = "indent with spaces"
    elif problem == "mapping values are not allowed here":
        problem = "unexpected ':'"
        hint = "check this line's indentation, or quote a value that contains ': '"
    elif exc.context == "while scanning a simple key" and exc.context_mark is not None:
        # YAML gives up where it stopped looking (maybe lines later); the key is where
        # the mistake is.
        line, column = exc.context_mark.line + 1, exc.context_mark.column + 1
        problem = "no ':' after this key"
        hint = "a key ends with ':' on the same line, within 1024 characters"
    elif exc.context and exc.context_mark is not None and exc.problem_mark is not None:
        start_mark = exc.context_mark
        hint = (
            f"{exc.context} started at line {start_mark.line + 1}, column {start_mark.column + 1}"
        )
    return Diagnostic(file, line, column, path, problem, hint)


def _duplicate_key(
    text: str, key: str, mapping_start: tuple[int, int]
) -> tuple[KeyPath, int | None]:
    """The key path of a duplicated key and the line of its first occurrence.

    Loads the text again allowing duplicates (the first one is kept), then finds the
    mapping that starts where YAML said the duplicate was found.
    """
    yaml = _yaml()
    yaml.allow_duplicate_keys = True
    positions: dict[KeyPath, tuple[int, int]] = {}
    try:
        _plain(yaml.load(text), (), positions)
    except (MarkedYAMLError, Refused):
        return (), None
    for path, (line, _column) in positions.items():
        if not path or path[-1] != key:
            continue
        siblings = [
            where
            for other, where in positions.items()
            if other[:-1] == path[:-1] and len(other) == len(path) and isinstance(other[-1], str)
        ]
        if min(siblings) == mapping_start:
            return path, line
    return (), None


def _plain(node: Any, path: KeyPath, positions: dict[KeyPath, tuple[int, int]]) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            # Keys brought in by a merge (``<<: *base``) have no position in this
            # mapping; diagnostics about them point at the mapping itself.
            if key in node.lc.data:
                positions[child] = node.lc.key(key)
            out[str(key) if not isinstance(key, str) else key] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            positions[child] = node.lc.item(index)
            # A list of names (``depends_on: [db, cache]``) becomes a mapping keyed by
            # name in the model; record each item under its value too, so a problem
            # with dependency ``db`` points at the item rather than at the list.
            if isinstance(value, str):
                positions.setdefault((*path, str(value)), node.lc.item(index))
            items.append(_plain(value, child, positions))
        return items
    if isinstance(node, str):
        return str(node)  # drop ruamel's scalar subclasses
    if isinstance(node, TaggedScalar):  # !!str 5, the only tag the loader lets through
        return str(node.value)
    return node
