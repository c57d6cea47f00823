"""Bounds on what a manifest may make the YAML loader build: size, nesting, aliases.

A manifest is a few hundred values; YAML lets a few lines stand for billions of them
(an alias of a list of aliases of lists, the "billion laughs"), nest deeper than the
Python stack, or refer to itself. The loader refuses those at the node that crosses a
bound, with its line, column and key path, before anything is expanded:

- ``MAX_MANIFEST_BYTES``: the file (read no further than that);
- ``MAX_DEPTH``: nesting of mappings and lists (ruamel.yaml's own ``max_depth``);
- ``MAX_INTEGER_CHARACTERS``: an integer's length as written;
- text: no lone surrogate (``"\\ud800"``), which no file or environment can hold;
- tags: none but ``!!str`` on a scalar ("this is text"). ``!!binary``, ``!!set``,
  ``!!python/…`` or ``!!int x`` would build what no setting takes, or crash the
  constructor (``!!bool x`` is a KeyError in ruamel.yaml), before any check could
  name the line;
- ``MAX_VALUES``: values in the document once every alias is expanded, counted as the
  document is composed, so an alias costs the size of what it repeats.

ruamel.yaml composes a node graph in which an alias is the anchored node itself (shared,
not copied); only a later walk of that graph expands it. It has a depth bound but none
on aliases, hence :class:`BoundedComposer`.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.error import StreamMark
from ruamel.yaml.events import AliasEvent, ScalarEvent
from ruamel.yaml.nodes import Node, ScalarNode

from corral.manifest._diagnostics import (
    SHOWN_CHARACTERS,
    Diagnostic,
    KeyPath,
    PathPart,
    printable,
)

MAX_MANIFEST_BYTES = 2**20
"""1 MiB: a manifest of hundreds of services is a few dozen kilobytes."""

MAX_DEPTH = 64
"""The deepest manifest key (``gateway.routes[0].match.headers.x.exact``) is 6 levels."""

MAX_VALUES = 100_000
"""Values once aliases are expanded. Measured here: ridehail's manifest holds about 400;
100,000 take ruamel.yaml's pure-Python loader about 10 s and 150 MB (1 MiB of anything
else at most 15 s, 100 MB)."""


MAX_INTEGER_CHARACTERS = 100
"""Python refuses to read an integer of over 4,300 digits (a traceback in the loader);
no setting takes one of 20. Longer integers are refused as written."""

_INT = "tag:yaml.org,2002:int"
_STR = "tag:yaml.org,2002:str"
_CORE = "tag:yaml.org,2002:"


class Refused(Exception):
    """The document crosses a bound, or uses what a manifest may not, at ``mark`` (a
    position) and ``path`` (its key path)."""

    def __init__(self, message: str, hint: str, mark: StreamMark | None, path: KeyPath) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.mark = mark
        self.path = path

    def diagnostic(self, file: str) -> Diagnostic:
        line, column = (self.mark.line + 1, self.mark.column + 1) if self.mark else (1, 1)
        return Diagnostic(file, line, column, self.path, self.message, self.hint)


def too_large(size: int, *, whole: bool) -> tuple[str, str]:
    """The message and hint for a manifest of ``size`` bytes (``whole``: all of it; else
    as far as it was read)."""
    more = "" if whole else " or more"
    return (
        f"the manifest is {size:,} bytes{more}; it may be at most {MAX_MANIFEST_BYTES:,}",
        "a manifest describes services and their wiring; data belongs in files it names",
    )


class BoundedComposer(Composer):
    """ruamel.yaml's composer, counting each node's expanded size and refusing an alias
    that refers to the node it is inside (a cycle, which no expansion can end)."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        # YAML 1.2 allows an anchor to be defined again (the later one wins); the
        # composer's default is a Python warning on stderr, which is noise to a user.
        self.warn_double_anchors = False
        self._path: list[PathPart] = []
        self._values = 0
        self._sizes: dict[int, int] = {}
        """Expanded size of each finished anchored node, by ``id`` (nodes outlive us)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        part = _path_part(index)
        if part is not None:
            self._path.append(part)
        try:
            return self._compose(parent, index)
        finally:
            if part is not None:
                self._path.pop()

    def _compose(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)  # says so if the anchor is unknown
            size = self._sizes.get(id(node))
            if size is None:  # the anchored node is still being composed
                raise Refused(
                    f"alias *{event.anchor} refers to a mapping or list that contains it",
                    "an alias can repeat an earlier value, not the one it is written in",
                    event.start_mark,
                    tuple(self._path),
                )
            self._count(size, event.start_mark, alias=event.anchor)
            return node
        tag = None if event.ctag is None else str(event.ctag)
        if tag is not None and not (tag == _STR and isinstance(event, ScalarEvent)):
            written = printable(tag.replace(_CORE, "!!", 1), SHOWN_CHARACTERS)
            raise Refused(
                f"YAML tag {written} has no place in a manifest",
                "write the value plainly, or quote it to make it text",
                event.start_mark,
                tuple(self._path),
            )
        start = self._values
        self._count(1, event.start_mark, alias=None)
        try:
            node = super().compose_node(parent, index)
        except MaxDepthExceededError as exc:
            raise Refused(
                f"nested deeper than {MAX_DEPTH} levels",
                "a manifest nests a few levels; look for an unclosed '[' or '{' or runaway "
                "indentation",
                exc.problem_mark,
                tuple(self._path),
            ) from None
        if event.anchor is not None:
            self._sizes[id(node)] = self._values - start
        if isinstance(node, ScalarNode):
            self._check_scalar(node)
        return node

    def _check_scalar(self, node: ScalarNode) -> None:
        if str(node.tag) == _INT:
            self._check_integer(node)
        if not node.value.isascii():
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError as exc:
                # "\ud800" is a valid YAML escape of no character: the text could
                # never be written to a file or put in an environment.
                surrogate = printable(node.value[exc.start], SHOWN_CHARACTERS)
                raise Refused(
                    f"this text holds {surrogate}, half of a UTF-16 pair, which is no character",
                    "write the character itself, or escape it whole as \\UXXXXXXXX",
                    node.start_mark,
                    tuple(self._path),
                ) from None

    def _check_integer(self, node: ScalarNode) -> None:
        if len(node.value) > MAX_INTEGER_CHARACTERS:
            raise Refused(
                f"this integer has {len(node.value):,} characters; no setting takes one "
                f"longer than {MAX_INTEGER_CHARACTERS}",
                "quote it if it is meant as text",
                node.start_mark,
                tuple(self._path),
            )

    def _count(self, size: int, mark: StreamMark, *, alias: str | None) -> None:
        self._values += size
        if self._values <= MAX_VALUES:
            return
        if alias is None:
            raise Refused(
                f"the manifest holds more than {MAX_VALUES:,} values",
                "a manifest describes services and their wiring; data belongs in files it names",
                mark,
                tuple(self._path),
            )
        raise Refused(
            f"alias *{alias} repeats {size:,} values, which makes the manifest hold more "
            f"than {MAX_VALUES:,} once aliases are expanded",
            "an alias repeats all of its anchor, so aliases of aliases multiply; "
            "write the values out or alias less",
            mark,
            tuple(self._path),
        )


def _path_part(index: Any) -> PathPart | None:
    """The key path step ruamel.yaml's ``index`` stands for: a list position, a mapping's
    key node for its value, or None for a key itself and the document's root."""
    if isinstance(index, int):
        return index
    if isinstance(index, ScalarNode):
        return str(index.value)
    if isinstance(index, Node):
        return "?"  # a mapping or list used as a key: no name to give it
    return None


def bounded(yaml: YAML) -> YAML:
    """``yaml`` (a ruamel.yaml ``YAML``) with the bounds above."""
    yaml.Composer = BoundedComposer
    yaml.max_depth = MAX_DEPTH
    return yaml
